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
    """Average request-level values per user: values [N] or [N, M] -> (unique users, [U] or [U, M] means)."""
    uniq, inverse = np.unique(np.asarray(users), return_inverse=True)
    inverse = inverse.reshape(-1)
    values = np.asarray(values, dtype=np.float64)
    counts = np.maximum(np.bincount(inverse, minlength=len(uniq)), 1)
    if values.ndim == 1:
        return uniq, np.bincount(inverse, weights=values, minlength=len(uniq)) / counts
    sums = np.stack([np.bincount(inverse, weights=values[:, j], minlength=len(uniq))
                     for j in range(values.shape[1])], axis=1)
    return uniq, sums / counts[:, None]


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


def paired_bootstrap_columns(candidate: np.ndarray, baseline: np.ndarray, users: np.ndarray,
                             n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                             budget: int = 4_000_000) -> dict:
    """Paired bootstrap of mean(candidate - baseline) for several metrics at once, resampling users.

    candidate, baseline [N, M] request-level metrics on the same requests; users [N] ids. Requests
    are averaged per user first, users are resampled with replacement, and the interval is the
    percentile one. The [resamples, users] index matrix is drawn in chunks of at most `budget`
    entries (100k users x 1000 resamples would otherwise hold 800 MB) and one draw serves every
    metric. Returns candidate, baseline, diff, lower, upper (each [M]) and n_users.
    """
    m = candidate.shape[1]
    _, means = per_user_mean(np.concatenate([candidate, baseline], axis=1), users)  # one grouping for both
    cand_u, base_u = means[:, :m], means[:, m:]
    n_users = len(means)
    diff_u = cand_u - base_u
    rng = np.random.default_rng(seed)
    chunk = max(1, budget // n_users)
    boot = []
    for start in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - start)
        boot.append(diff_u[rng.integers(0, n_users, size=(m, n_users))].mean(axis=1))
    alpha = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(np.concatenate(boot, axis=0), [alpha, 1.0 - alpha], axis=0)
    return {"candidate": cand_u.mean(axis=0), "baseline": base_u.mean(axis=0),
            "diff": cand_u.mean(axis=0) - base_u.mean(axis=0), "lower": lower, "upper": upper,
            "n_users": n_users}


def paired_bootstrap(
    candidate: np.ndarray,
    baseline: np.ndarray,
    users: np.ndarray | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """One metric's paired bootstrap (see paired_bootstrap_columns); users None: each request is
    its own user."""
    candidate = np.asarray(candidate, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if candidate.shape != baseline.shape:
        raise ValueError(f"paired metrics differ in shape: {candidate.shape} vs {baseline.shape}")
    if len(candidate) == 0:
        nan = float("nan")
        return PairedDifference(nan, nan, nan, nan, nan, nan, 0)
    if users is None:
        users = np.arange(len(candidate))
    r = paired_bootstrap_columns(candidate[:, None], baseline[:, None], np.asarray(users), n_resamples,
                                 confidence, seed)
    cand_mean, base_mean, diff = float(r["candidate"][0]), float(r["baseline"][0]), float(r["diff"][0])
    relative = diff / base_mean if base_mean != 0 else float("nan")
    return PairedDifference(cand_mean, base_mean, diff, float(r["lower"][0]), float(r["upper"][0]), relative,
                            r["n_users"])
