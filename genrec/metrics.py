"""Ranking metrics and the paired bootstrap used by training, evaluation and benchmarks.

Everything works on 1-based ranks of the target item, so a metric is computed once per request and
aggregated per user before any confidence interval (users, not requests, are the independent unit).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def target_ranks(scores: np.ndarray, targets: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each target among the catalog.

    scores [B, C] float; targets [B] int catalog positions (-1: target not in catalog -> rank 0,
    which every metric scores as a miss); exclude [B, C] bool marks titles removed from ranking
    (e.g. already seen); the target itself is never excluded. Ties count against the target
    (pessimistic), so a constant scorer cannot look good.
    """
    scores = np.asarray(scores, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    valid = targets >= 0
    safe = np.where(valid, targets, 0)
    target_scores = scores[np.arange(len(targets)), safe][:, None]
    beats = scores >= target_scores
    if exclude is not None:
        beats &= ~np.asarray(exclude, dtype=bool)
    beats[np.arange(len(targets)), safe] = False
    ranks = beats.sum(axis=1) + 1
    return np.where(valid, ranks, 0).astype(np.int64)


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    """[N] float: 1/rank, 0 for a missing target."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks > 0, 1.0 / np.maximum(ranks, 1.0), 0.0)


def recall_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """[N] float: 1 when the target is in the top k (hit rate for one target per request)."""
    ranks = np.asarray(ranks)
    return ((ranks > 0) & (ranks <= k)).astype(np.float64)


def ndcg_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """[N] float: 1/log2(rank+1) inside the top k, else 0 (one relevant item per request)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = (ranks > 0) & (ranks <= k)
    return np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1.0) + 1.0), 0.0)


def summarize(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """Mean MRR, Recall@k and NDCG@k over requests."""
    if len(ranks) == 0:
        return {"mrr": float("nan"), f"recall@{k}": float("nan"), f"ndcg@{k}": float("nan"), "n": 0}
    return {
        "mrr": float(reciprocal_rank(ranks).mean()),
        f"recall@{k}": float(recall_at_k(ranks, k).mean()),
        f"ndcg@{k}": float(ndcg_at_k(ranks, k).mean()),
        "n": int(len(ranks)),
    }


def per_user_mean(values: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average request-level values per user: returns (unique users, [U] means)."""
    uniq, inverse = np.unique(np.asarray(users), return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(values, dtype=np.float64), minlength=len(uniq))
    counts = np.bincount(inverse, minlength=len(uniq))
    return uniq, sums / np.maximum(counts, 1)


@dataclass(frozen=True)
class PairedDifference:
    """Candidate minus baseline, with a bootstrap interval over users."""

    candidate: float
    baseline: float
    diff: float
    lower: float
    upper: float
    relative: float  # diff / baseline (nan when the baseline is 0)
    n_users: int


def paired_bootstrap(
    candidate: np.ndarray,
    baseline: np.ndarray,
    users: np.ndarray | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Paired bootstrap of mean(candidate - baseline), resampling users (requests grouped by user).

    candidate, baseline [N] float request-level metrics on the same requests; users [N] ids (None:
    each request is its own user).
    """
    candidate = np.asarray(candidate, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if candidate.shape != baseline.shape:
        raise ValueError(f"paired metrics differ in shape: {candidate.shape} vs {baseline.shape}")
    if len(candidate) == 0:
        nan = float("nan")
        return PairedDifference(nan, nan, nan, nan, nan, nan, 0)
    if users is None:
        users = np.arange(len(candidate))
    _, cand_u = per_user_mean(candidate, users)
    _, base_u = per_user_mean(baseline, users)
    diff_u = cand_u - base_u
    rng = np.random.default_rng(seed)
    n = len(diff_u)
    idx = rng.integers(0, n, size=(n_resamples, n))
    boot = diff_u[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(boot, [alpha, 1.0 - alpha])
    cand_mean, base_mean = float(cand_u.mean()), float(base_u.mean())
    diff = cand_mean - base_mean
    relative = diff / base_mean if base_mean != 0 else float("nan")
    return PairedDifference(cand_mean, base_mean, diff, float(lower), float(upper), relative, n)
