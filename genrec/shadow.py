"""Shadow evaluation: replay the held-out window against candidate and baseline, then decide.

Replay. For each user in `shadow/`, every window event i is a request whose history is every event
before it; the target for task t is the next event of type t at or after i. Cached serving: what was
computed at request i-d is still being served at request i, so with delay d the target of request i is
scored from the history at request i-d (events[:i-d]) and the model is told `delay=d` (an MTP model
uses its aligned head). Requests whose delayed history is shorter than `min_history` are skipped.
The catalog is the one of the moment the recommendations were computed (the event after the
history): a title whose launch date (titles.parquet) is later is ranked by neither recommender, and
a target launched after it is a miss. Otherwise a title launched in the window's last days would
compete in every earlier request, which rewards models that rank new titles low and punishes ones
that know new titles are in demand once they launch.

Metrics per task x delay x slice (all titles, cold-start titles, user-activity buckets by history
length at the request): MRR, Recall@K, NDCG@K for candidate and baseline on the same requests,
averaged per user then over users (users are the independent unit), and the paired difference with
a bootstrap interval that resamples users.

Decision (fail closed): promote only if the primary task's MRR difference (primary delay, all titles)
has its lower bound above `min_gain` and no task's MRR at any evaluated delay (all titles) drops by
more than `tolerance` relative to the baseline. An empty window, NaN metrics, or a candidate or
baseline that cannot be loaded or scored is a hold with its reason, never an exception.

Each distinct history (user, prefix) is built once and scored once per recommender through
`Recommender.score_heads` with every (task, delay) it serves, batched ([batch_size, C] per head at a
time), never [users x catalog].
"""
from __future__ import annotations

import html
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genrec.errors import ConfigError, InputError
from genrec.events import EXTRACT_METRICS_FILE, ITEM_ID, TITLES_FILE, VOCAB_FILE
from genrec.metrics import ndcg_at_k, paired_bootstrap_columns, recall_at_k, reciprocal_rank
from genrec.recommender import History, Recommender

log = logging.getLogger(__name__)

PROMOTE, HOLD = "promote", "hold"
SLICE_ALL, SLICE_COLD = "all", "cold_start"
PUBLISHED_FILE = "published.json"  # written by genrec.registry next to a published model
JSON_FILE, MARKDOWN_FILE, HTML_FILE = "shadow.json", "shadow.md", "shadow.html"


@dataclass(frozen=True)
class ShadowConfig:
    """How the window is replayed and what it takes to promote."""

    delays: tuple[int, ...] = (0, 1, 2)  # cached-serving delays, in requests
    primary_task: str | None = None  # None: the task with the most window events
    primary_delay: int | None = None  # None: the smallest delay
    min_gain: float = 0.0  # the primary MRR difference's lower bound must exceed this (absolute)
    tolerance: float = 0.02  # no task may lose more than this fraction of baseline MRR
    k: int = 10  # Recall@K, NDCG@K
    activity_edges: tuple[int, ...] = (1, 10, 50)  # history-length buckets: 1-9, 10-49, 50+
    min_history: int = 1  # skip requests whose (delayed) history is shorter
    max_history: int = 512  # most recent events passed to a recommender
    batch_size: int = 256  # requests scored at once: memory is batch_size x catalog floats
    n_resamples: int = 1000  # bootstrap resamples of users
    confidence: float = 0.95
    seed: int = 0
    recent_days: float | None = 28.0  # popularity baseline window (None: whole train split)
    tasks: tuple[str, ...] | None = None  # None: every event type in the window both models support

    def __post_init__(self) -> None:
        if not self.delays or any(d < 0 for d in self.delays):
            raise ConfigError(f"shadow delays must be non-negative and non-empty, got {self.delays}")
        if self.primary_delay is not None and self.primary_delay not in self.delays:
            raise ConfigError(f"primary delay {self.primary_delay} is not among delays {self.delays}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.tolerance < 0:
            raise ConfigError(f"tolerance must be >= 0, got {self.tolerance}")
        if list(self.activity_edges) != sorted(set(self.activity_edges)) or not self.activity_edges:
            raise ConfigError(f"activity_edges must be increasing, got {self.activity_edges}")
        if self.batch_size < 1 or self.n_resamples < 1 or self.min_history < 0 or self.max_history < 1:
            raise ConfigError("batch_size, n_resamples and max_history must be >= 1, min_history >= 0")

    @property
    def delay_for_decision(self) -> int:
        return self.primary_delay if self.primary_delay is not None else min(self.delays)

    @property
    def metric_names(self) -> tuple[str, str, str]:
        return ("mrr", f"recall@{self.k}", f"ndcg@{self.k}")


# --- the replayed window -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """The shadow split flattened: events of user u are rows offsets[u]:offsets[u+1] (time order)."""

    user_ids: np.ndarray  # [U] object
    offsets: np.ndarray  # [U+1] int64
    n_history: np.ndarray  # [U] int64
    items: np.ndarray  # [E] object item ids
    event_types: np.ndarray  # [E] object
    timestamps: np.ndarray  # [E] int64

    @classmethod
    def from_table(cls, table: pa.Table) -> "Window":
        items = table["items"].combine_chunks()
        offsets = items.offsets.to_numpy().astype(np.int64)
        offsets = offsets - offsets[0]
        return cls(
            user_ids=np.asarray(table["user_id"].to_pylist(), dtype=object),
            offsets=offsets,
            n_history=table["n_history"].to_numpy().astype(np.int64),
            items=np.asarray(pc.list_flatten(items).to_pylist(), dtype=object),
            event_types=np.asarray(pc.list_flatten(table["event_types"]).to_pylist(), dtype=object),
            timestamps=pc.list_flatten(table["timestamps"]).to_numpy().astype(np.int64),
        )

    def history(self, user: int, length: int, max_history: int) -> History:
        """History of `user` made of its first `length` events (at most the last `max_history`)."""
        start = self.offsets[user]
        lo = start + max(0, length - max_history)
        hi = start + length
        return History(items=self.items[lo:hi], event_types=self.event_types[lo:hi],
                       timestamps=self.timestamps[lo:hi], request_time=int(self.timestamps[hi]))

    def window_mask(self) -> np.ndarray:
        """[E] bool: the event lies in the shadow window (after the user's n_history)."""
        position = np.arange(len(self.items)) - np.repeat(self.offsets[:-1], np.diff(self.offsets))
        user = np.repeat(np.arange(len(self.user_ids)), np.diff(self.offsets))
        return position >= self.n_history[user]


@dataclass(frozen=True)
class Requests:
    """Requests of one (task, delay), parallel arrays [N]."""

    user: np.ndarray  # int64 user row in the Window
    prefix: np.ndarray  # int64 events of history used for scoring (request index - delay)
    activity: np.ndarray  # int64 history length at the request itself
    target: np.ndarray  # int64 catalog position of the target (-1: not in catalog)
    cold: np.ndarray  # bool target is a cold-start title

    def __len__(self) -> int:
        return len(self.user)


def build_requests(window: Window, catalog_index: dict[str, int], cold_start: np.ndarray,
                   tasks: Sequence[str], delays: Sequence[int], min_history: int) -> dict[tuple[str, int], Requests]:
    """Every (task, delay)'s requests, vectorised over all events (no per-user Python loop).

    cold_start [C] bool by catalog position.
    """
    n = len(window.items)
    counts = np.diff(window.offsets)
    user = np.repeat(np.arange(len(window.user_ids)), counts)
    position = np.arange(n) - np.repeat(window.offsets[:-1], counts)
    in_window = position >= window.n_history[user] if n else np.zeros(0, bool)
    catalog_pos = np.fromiter((catalog_index.get(i, -1) for i in window.items), dtype=np.int64, count=n)
    out: dict[tuple[str, int], Requests] = {}
    for task in tasks:
        is_task = window.event_types == task
        # next event of this task at or after each event: reverse running minimum of its indices
        candidates = np.where(is_task, np.arange(n), n)
        nxt = np.minimum.accumulate(candidates[::-1])[::-1] if n else candidates
        has_next = nxt < n
        has_next[has_next] &= user[nxt[has_next]] == user[has_next]
        base = in_window & has_next
        for delay in delays:
            keep = base & (position - delay >= max(min_history, 0))
            target = catalog_pos[nxt[keep]]
            out[(task, delay)] = Requests(
                user=user[keep], prefix=position[keep] - delay, activity=position[keep], target=target,
                cold=np.where(target >= 0, cold_start[np.maximum(target, 0)], False),
            )
    return out


# --- scoring --------------------------------------------------------------------------------------------
def fast_target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[B] int64 ranks equal to genrec.metrics.target_ranks(scores, targets) (pessimistic ties, -1
    targets -> 0) in one comparison pass; a score matrix whose rows are all the same (stride 0, e.g.
    the popularity baseline) is ranked once by sorting. scores [B, C] float, finite; targets [B] int."""
    targets = np.asarray(targets, dtype=np.int64)
    valid = targets >= 0
    safe = np.where(valid, targets, 0)
    if scores.ndim == 2 and scores.shape[0] > 0 and scores.strides[0] == 0:
        row = np.asarray(scores[0], dtype=np.float32)
        ordered = np.sort(row)
        at_least = len(row) - np.searchsorted(ordered, row[safe], side="left")  # titles scoring >= target
    else:
        scores = np.asarray(scores, dtype=np.float32)
        target_scores = scores[np.arange(len(safe)), safe][:, None]
        at_least = np.count_nonzero(scores >= target_scores, axis=1)  # includes the target: 1-based rank
    return np.where(valid, at_least, 0).astype(np.int64)


def available_ranks(scores: np.ndarray, targets: np.ndarray, launch: np.ndarray | None,
                    times: np.ndarray | None) -> np.ndarray:
    """fast_target_ranks among the titles launched by each row's time: `launch` [C] int64 epoch
    seconds (None: every title is available, and `times` is not read), `times` [B] int64. A target
    launched later is a miss (rank 0). Only titles launching after the batch's earliest time are
    looked at again."""
    ranks = fast_target_ranks(scores, targets)
    if launch is None or len(times) == 0:
        return ranks
    late_cols = np.flatnonzero(launch > times.min())
    if len(late_cols) == 0:
        return ranks
    targets = np.asarray(targets, dtype=np.int64)
    safe = np.maximum(targets, 0)
    target_scores = np.asarray(scores[np.arange(len(safe)), safe], dtype=np.float32)[:, None]
    late = launch[late_cols][None, :] > times[:, None]  # [B, L] not yet launched at the row's time
    ahead = (np.asarray(scores[:, late_cols], dtype=np.float32) >= target_scores) & late
    ranks = ranks - ahead.sum(axis=1)
    return np.where((targets >= 0) & (launch[safe] <= times), ranks, 0).astype(np.int64)


class ScoringError(Exception):
    """A recommender failed or returned unusable scores (hold, with this message as the reason)."""


Head = tuple[str, int]  # (task, delay)


@dataclass(frozen=True)
class HistoryPlan:
    """The distinct histories of a replay and which requests each one serves.

    The history ending at a user's event e serves request e + d of every task at delay d, so one
    history is shared by up to tasks x delays requests: it is built and encoded once. Histories are
    grouped by the exact set of heads that use them, so a batch asks only for heads it needs.
    """

    user: np.ndarray  # [H] int64 user row in the Window
    prefix: np.ndarray  # [H] int64 events in the history
    served: dict[Head, np.ndarray]  # per non-empty (task, delay): [N] int64 history of each request (ascending)
    groups: tuple[tuple[tuple[Head, ...], np.ndarray], ...]  # (heads, [n] int64 histories using exactly those)

    def __len__(self) -> int:
        return len(self.user)


def plan_histories(window: Window, requests: dict[Head, Requests]) -> HistoryPlan:
    """Deduplicate the requests' (user, prefix) histories, vectorised (no per-request Python loop)."""
    heads = [head for head, req in requests.items() if len(req)]
    ends = {head: window.offsets[requests[head].user] + requests[head].prefix for head in heads}  # event index
    unique = np.unique(np.concatenate([ends[h] for h in heads])) if heads else np.zeros(0, np.int64)
    served = {head: np.searchsorted(unique, ends[head]) for head in heads}
    uses = np.zeros((len(unique), len(heads)), bool)
    for j, head in enumerate(heads):
        uses[served[head], j] = True
    user = np.searchsorted(window.offsets, unique, side="right") - 1  # skips users without events
    groups: list[tuple[tuple[Head, ...], np.ndarray]] = []
    if len(unique):
        patterns, inverse = np.unique(uses, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(patterns)))])
        groups = [(tuple(h for h, used in zip(heads, pattern) if used), order[lo:hi])
                  for pattern, lo, hi in zip(patterns, bounds[:-1], bounds[1:])]
    return HistoryPlan(user=user.astype(np.int64), prefix=(unique - window.offsets[user]).astype(np.int64),
                       served=served, groups=tuple(groups))


def _scoring_failure(recommender: Recommender, histories: Sequence[History], heads: Sequence[Head], role: str,
                     err: Exception) -> ScoringError:
    """The error naming the (task, delay) that failed; with several heads, each is retried alone to find it."""
    culprit = heads[0] if len(heads) == 1 else None
    for head in heads if culprit is None else ():
        try:
            recommender.score_heads(histories, [head])
        except Exception as single:
            culprit, err = head, single
            break
    if culprit is None:
        return ScoringError(f"{role} failed to score tasks and delays {list(heads)} together: "
                            f"{type(err).__name__}: {err}")
    task, delay = culprit
    return ScoringError(f"{role} failed to score task {task!r} at delay {delay}: {type(err).__name__}: {err}")


def checked_scores(recommender: Recommender, histories: Sequence[History], heads: Sequence[Head],
                   catalog_size: int, role: str) -> list[np.ndarray]:
    """`recommender.score_heads`, each output [B, C] checked for shape and finiteness (ScoringError)."""
    try:
        outputs = list(recommender.score_heads(histories, list(heads)))
    except Exception as err:  # a model bug must become a hold, not a crashed pipeline
        raise _scoring_failure(recommender, histories, heads, role, err) from None
    if len(outputs) != len(heads):
        raise ScoringError(f"{role} returned {len(outputs)} score arrays for the {len(heads)} heads {list(heads)}")
    checked = []
    for scores, (task, delay) in zip(outputs, heads):
        scores = np.asarray(scores)
        if scores.shape != (len(histories), catalog_size):
            raise ScoringError(f"{role} returned scores of shape {scores.shape} for task {task!r}, "
                               f"expected {(len(histories), catalog_size)}")
        rows = scores[:1] if scores.strides[0] == 0 else scores  # shared rows: check one
        if rows.size and not (np.isfinite(rows.max()) and np.isfinite(rows.min())):
            raise ScoringError(f"{role} returned non-finite scores for task {task!r} at delay {delay}")
        checked.append(scores)
    return checked


def replay_ranks(recommenders: dict[str, Recommender], window: Window, requests: dict[Head, Requests],
                 config: ShadowConfig, catalog_size: int,
                 launch: np.ndarray | None = None) -> dict[str, dict[Head, np.ndarray]]:
    """{role: {(task, delay): [N] int64 1-based target ranks (0: target not in catalog or not yet
    launched)}}, ranked among the titles launched by each history's request time (`launch` [C]).

    Each distinct history is built once and passed once to each recommender's `score_heads` with
    every head that uses it, batch_size histories at a time (memory: batch_size x C floats per head).
    """
    plan = plan_histories(window, requests)
    ranks = {role: {head: np.zeros(len(requests[head]), np.int64) for head in plan.served} for role in recommenders}
    for heads, members in plan.groups:
        for start in range(0, len(members), config.batch_size):
            batch = members[start:start + config.batch_size]
            histories = [window.history(int(plan.user[h]), int(plan.prefix[h]), config.max_history) for h in batch]
            rows = [np.searchsorted(plan.served[head], batch) for head in heads]  # request of each history
            times = None if launch is None else np.array([h.request_time for h in histories], dtype=np.int64)
            for role, recommender in recommenders.items():
                outputs = checked_scores(recommender, histories, heads, catalog_size, role)
                for head, scores, index in zip(heads, outputs, rows):
                    ranks[role][head][index] = available_ranks(scores, requests[head].target[index], launch, times)
    return ranks


def request_metrics(ranks: np.ndarray, k: int) -> np.ndarray:
    """[N, 3] float64: reciprocal rank, recall@k, ndcg@k per request."""
    return np.stack([reciprocal_rank(ranks), recall_at_k(ranks, k), ndcg_at_k(ranks, k)], axis=1)


def activity_slices(activity: np.ndarray, edges: Sequence[int]) -> list[tuple[str, np.ndarray]]:
    """[(name, [N] bool)] history-length buckets: edges (1, 10, 50) -> history_1-9, 10-49, 50+."""
    out = []
    bounds = list(edges) + [None]
    if edges[0] > 0:
        out.append((f"history_0-{edges[0] - 1}", activity < edges[0]))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        name = f"history_{lo}+" if hi is None else f"history_{lo}-{hi - 1}"
        mask = activity >= lo if hi is None else (activity >= lo) & (activity < hi)
        out.append((name, mask))
    return out


def metric_rows(task: str, delay: int, requests: Requests, cand_ranks: np.ndarray, base_ranks: np.ndarray,
                config: ShadowConfig) -> list[dict[str, Any]]:
    """One row per slice x metric for a (task, delay)."""
    cand, base = request_metrics(cand_ranks, config.k), request_metrics(base_ranks, config.k)
    slices = [(SLICE_ALL, np.ones(len(requests), bool)), (SLICE_COLD, requests.cold)]
    slices += activity_slices(requests.activity, config.activity_edges)
    rows = []
    for name, mask in slices:
        if not mask.any():
            continue
        stats = paired_bootstrap_columns(cand[mask], base[mask], requests.user[mask], config.n_resamples,
                                      config.confidence, config.seed)
        for j, metric in enumerate(config.metric_names):
            b = float(stats["baseline"][j])
            d = float(stats["diff"][j])
            rows.append({
                "task": task, "delay": int(delay), "slice": name, "metric": metric,
                "candidate": float(stats["candidate"][j]), "baseline": b, "diff": d,
                "lower": float(stats["lower"][j]), "upper": float(stats["upper"][j]),
                "relative": d / b if b != 0 else float("nan"),
                "n_requests": int(mask.sum()), "n_users": int(stats["n_users"]),
            })
    return rows


# --- decision ---------------------------------------------------------------------------------------------
def _finite(*values: float) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def find_row(rows: Sequence[dict], task: str, delay: int, slice_: str = SLICE_ALL, metric: str = "mrr") -> dict | None:
    for row in rows:
        if (row["task"], row["delay"], row["slice"], row["metric"]) == (task, delay, slice_, metric):
            return row
    return None


def decide(rows: Sequence[dict], tasks: Sequence[str], primary_task: str, config: ShadowConfig) -> tuple[str, list[str]]:
    """(decision, reasons): the rule in this module's docstring, every check stated in the reasons."""
    reasons: list[str] = []
    delay = config.delay_for_decision
    primary = find_row(rows, primary_task, delay)
    ok = True
    if primary is None:
        return HOLD, [f"no requests for the primary task {primary_task!r} at delay {delay}"]
    if not _finite(primary["candidate"], primary["baseline"], primary["lower"], primary["upper"]):
        return HOLD, [f"primary MRR ({primary_task}, delay {delay}) is NaN"]
    if primary["lower"] > config.min_gain:
        reasons.append(f"primary {primary_task} MRR at delay {delay}: {primary['candidate']:.4f} vs "
                       f"{primary['baseline']:.4f}, diff {primary['diff']:+.4f} with CI lower bound "
                       f"{primary['lower']:+.4f} > min_gain {config.min_gain:g}")
    else:
        ok = False
        reasons.append(f"primary {primary_task} MRR at delay {delay}: diff {primary['diff']:+.4f}, CI lower "
                       f"bound {primary['lower']:+.4f} is not above min_gain {config.min_gain:g}")
    for task in tasks:
        for d in config.delays:
            row = find_row(rows, task, d)
            if row is None:
                continue
            if not _finite(row["candidate"], row["baseline"]):
                ok = False
                reasons.append(f"{task} MRR at delay {d} is NaN")
                continue
            if row["baseline"] > 0 and row["diff"] / row["baseline"] < -config.tolerance:
                ok = False
                reasons.append(f"{task} MRR at delay {d} drops {-row['diff'] / row['baseline']:.1%} "
                               f"({row['candidate']:.4f} vs {row['baseline']:.4f}), more than the "
                               f"{config.tolerance:.1%} tolerance")
    if ok:
        reasons.append(f"no task loses more than {config.tolerance:.1%} MRR at delays {list(config.delays)}")
    return (PROMOTE if ok else HOLD), reasons


# --- inputs ----------------------------------------------------------------------------------------------
def read_catalog(sequences_dir: str) -> tuple[list[str], np.ndarray]:
    """(item_ids, [C] bool cold_start) from vocabulary.parquet: every train and cold-start title."""
    path = os.path.join(sequences_dir, VOCAB_FILE)
    try:
        table = pq.read_table(path, columns=[ITEM_ID, "cold_start"])
    except (OSError, pa.ArrowInvalid, KeyError) as err:
        raise InputError(f"{path}: cannot read the catalog ({err})") from None
    if len(table) == 0:
        raise InputError(f"{path}: catalog is empty")
    return table[ITEM_ID].to_pylist(), table["cold_start"].to_numpy(zero_copy_only=False).astype(bool)


#: launch time of a title without a launch date: available in every request
ALWAYS_LAUNCHED = np.iinfo(np.int64).min


def read_launch(sequences_dir: str, item_ids: Sequence[str]) -> np.ndarray | None:
    """[C] int64 launch epoch seconds of the catalog's titles from titles.parquet (a title without
    one: always available), or None when the folder has no titles with launch dates."""
    path = os.path.join(sequences_dir, TITLES_FILE)
    if not os.path.exists(path):
        return None
    try:
        table = pq.read_table(path, columns=[ITEM_ID, "launch_date"])
    except (OSError, pa.ArrowInvalid, KeyError) as err:
        raise InputError(f"{path}: cannot read launch dates ({err})") from None
    known = table.filter(pc.is_valid(table["launch_date"]))
    if len(known) == 0:
        return None
    launch = dict(zip(known[ITEM_ID].to_pylist(), known["launch_date"].to_pylist()))
    return np.fromiter((launch.get(i, ALWAYS_LAUNCHED) for i in item_ids), dtype=np.int64, count=len(item_ids))


def catalog_vectors(embeddings_path: str | None, item_ids: Sequence[str]) -> np.ndarray | None:
    """[C, D] float32 metadata vectors aligned with the catalog (zeros where a title has none)."""
    if not embeddings_path:
        return None
    from genrec.semantic import read_embeddings

    try:
        ids, vectors = read_embeddings(embeddings_path)
    except (OSError, pa.ArrowInvalid, KeyError, ValueError) as err:
        raise InputError(f"{embeddings_path}: cannot read embeddings ({err})") from None
    out = np.zeros((len(item_ids), vectors.shape[1]), np.float32)
    row = {item: i for i, item in enumerate(ids)}
    for c, item in enumerate(item_ids):
        if item in row:
            out[c] = vectors[row[item]]
    return out


def data_window(sequences_dir: str, window: Window) -> dict[str, Any]:
    """Shadow window bounds, plus the extract step's window settings when it recorded them."""
    out: dict[str, Any] = {}
    in_window = window.window_mask()
    if in_window.any():
        out["shadow_start"] = int(window.timestamps[in_window].min())
        out["shadow_end"] = int(window.timestamps[in_window].max())
        out["shadow_events"] = int(in_window.sum())
    path = os.path.join(sequences_dir, EXTRACT_METRICS_FILE)
    if os.path.exists(path):
        try:
            with open(path) as fh:
                extract = json.load(fh)
            for key, value in (extract.items() if isinstance(extract, dict) else ()):
                if any(s in key for s in ("window", "start", "end", "cutoff", "days")) and \
                        isinstance(value, (int, float, str)):
                    out[key] = value
        except (OSError, json.JSONDecodeError):
            pass
    return out


# --- entry points ----------------------------------------------------------------------------------------
def _hold(reason: str, **extra: Any) -> dict[str, Any]:
    return {"decision": HOLD, "reasons": [reason], "rows": [], "primary": {}, **extra}


def shadow_evaluate_recommenders(
    sequences_dir: str,
    candidate: Recommender,
    baseline: Recommender,
    out_dir: str | None = None,
    config: ShadowConfig = ShadowConfig(),
    embeddings_path: str | None = None,
    baseline_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Replay `<sequences_dir>/shadow/` with two recommenders; returns (and writes, when `out_dir` is
    given) the evaluation dict. Never raises for bad data or failing recommenders: it holds."""
    started = time.perf_counter()
    info = {"baseline": baseline.description or type(baseline).__name__, "baseline_kind": "recommender",
            "baseline_run_id": None, **(baseline_info or {})}
    info["candidate"] = candidate.description or type(candidate).__name__
    info["config"] = asdict(config)
    try:
        result = _evaluate(sequences_dir, candidate, baseline, config, embeddings_path)
    except (InputError, ScoringError) as err:
        result = _hold(str(err))
    result = {**info, **result, "elapsed_s": round(time.perf_counter() - started, 3)}
    if result.get("n_users"):
        result["users_per_s"] = round(result["n_users"] / max(result["elapsed_s"], 1e-9), 2)
    if info["baseline_kind"] == "popularity":
        result["reasons"].append("no champion: compared with the popularity baseline")
    if out_dir:
        write_reports(result, out_dir)
    log.info("shadow evaluation: %s (%s)", result["decision"], "; ".join(result["reasons"]))
    return result


def _evaluate(sequences_dir: str, candidate: Recommender, baseline: Recommender, config: ShadowConfig,
              embeddings_path: str | None) -> dict[str, Any]:
    from genrec.data import read_split

    item_ids, cold_start = read_catalog(sequences_dir)
    table = read_split(sequences_dir, "shadow")
    window = Window.from_table(table)
    in_window = window.window_mask()
    if not in_window.any():
        return _hold(f"{os.path.join(sequences_dir, 'shadow')}: the shadow window has no events")
    window_types, type_counts = np.unique(window.event_types[in_window].astype(str), return_counts=True)
    tasks = [t for t in window_types.tolist()
             if (config.tasks is None or t in config.tasks)
             and (not candidate.tasks or t in candidate.tasks) and (not baseline.tasks or t in baseline.tasks)]
    if not tasks:
        return _hold(f"no task is both in the shadow window {window_types.tolist()} and scored by "
                     f"candidate {list(candidate.tasks)} and baseline {list(baseline.tasks)}")
    if config.primary_task is not None:
        primary_task = config.primary_task
    else:
        ranked = sorted(zip(type_counts.tolist(), window_types.tolist()), key=lambda p: (-p[0], p[1]))
        primary_task = next(t for _, t in ranked if t in tasks)
    vectors = catalog_vectors(embeddings_path, item_ids)
    try:
        candidate.set_catalog(item_ids, vectors)
        baseline.set_catalog(item_ids, vectors)
    except Exception as err:
        raise ScoringError(f"set_catalog failed: {type(err).__name__}: {err}") from None
    catalog_index = {item: i for i, item in enumerate(item_ids)}
    requests = build_requests(window, catalog_index, cold_start, tasks, config.delays, config.min_history)
    launch = read_launch(sequences_dir, item_ids)
    ranks = replay_ranks({"candidate": candidate, "baseline": baseline}, window, requests, config, len(item_ids),
                         launch)
    rows: list[dict[str, Any]] = []
    n_requests = 0
    users: set[int] = set()
    for (task, delay), req in requests.items():
        if len(req) == 0:
            continue
        rows += metric_rows(task, delay, req, ranks["candidate"][(task, delay)], ranks["baseline"][(task, delay)],
                            config)
        n_requests += len(req)
        users.update(np.unique(req.user).tolist())
    if n_requests == 0:
        return _hold(f"{os.path.join(sequences_dir, 'shadow')}: no request in the shadow window has a history "
                     f"of at least {config.min_history} events at delays {list(config.delays)}")
    decision, reasons = decide(rows, tasks, primary_task, config)
    primary_row = find_row(rows, primary_task, config.delay_for_decision) or {}
    primary = {"task": primary_task, "delay": config.delay_for_decision,
               **{k: primary_row.get(v) for k, v in (("candidate_mrr", "candidate"), ("baseline_mrr", "baseline"),
                                                      ("diff", "diff"), ("lower", "lower"), ("upper", "upper"),
                                                      ("relative", "relative"))}}
    summary = {}
    for task in tasks:
        for slice_ in (SLICE_ALL, SLICE_COLD):
            row = find_row(rows, task, config.delay_for_decision, slice_)
            if row:
                summary.setdefault(task, {})[slice_] = {"candidate_mrr": row["candidate"],
                                                        "baseline_mrr": row["baseline"], "diff": row["diff"]}
    return {"decision": decision, "reasons": reasons, "primary": primary, "tasks": tasks, "rows": rows,
            "summary": summary, "n_users": len(users), "n_requests": n_requests, "catalog_size": len(item_ids),
            "catalog_launch_dates": 0 if launch is None else int((launch > ALWAYS_LAUNCHED).sum()),
            "data_window": data_window(sequences_dir, window)}


def _published_run_id(model_dir: str) -> str | None:
    try:
        with open(os.path.join(model_dir, PUBLISHED_FILE)) as fh:
            return json.load(fh).get("run_id")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def shadow_evaluate(
    sequences_dir: str,
    candidate_dir: str,
    out_dir: str,
    config: ShadowConfig = ShadowConfig(),
    baseline_dir: str | None = None,
    embeddings_path: str | None = None,
) -> dict[str, Any]:
    """Evaluate the model in `candidate_dir` against the champion in `baseline_dir` (or, when None,
    popularity over the recent train window). Writes shadow.json/.md/.html into `out_dir`."""
    from genrec.baselines import PopularityRecommender

    os.makedirs(out_dir, exist_ok=True)
    info: dict[str, Any] = {"candidate_dir": candidate_dir, "baseline_dir": baseline_dir}
    try:
        from genrec.model.serving import load_recommender

        candidate = load_recommender(candidate_dir, embeddings_path)
    except Exception as err:
        return _finish(_hold(f"candidate {candidate_dir} could not be loaded: {type(err).__name__}: {err}",
                             baseline="not loaded", baseline_kind="none", **info), out_dir)
    if baseline_dir:
        try:
            baseline = load_recommender(baseline_dir, embeddings_path)
        except Exception as err:
            return _finish(_hold(f"baseline (champion) {baseline_dir} could not be loaded: {type(err).__name__}: {err}",
                                 baseline=f"champion at {baseline_dir} (unloadable)", baseline_kind="champion",
                                 baseline_run_id=_published_run_id(baseline_dir), **info), out_dir)
        run_id = _published_run_id(baseline_dir)
        info.update(baseline_kind="champion", baseline_run_id=run_id,
                    baseline=f"champion run {run_id}" if run_id else f"champion model at {baseline_dir}",
                    baseline_description=baseline.description)
    else:
        try:
            baseline = PopularityRecommender.from_sequences(sequences_dir, config.recent_days)
        except Exception as err:
            return _finish(_hold(f"popularity baseline could not be fitted: {type(err).__name__}: {err}",
                                 baseline="popularity (not fitted)", baseline_kind="popularity", **info), out_dir)
        info.update(baseline_kind="popularity", baseline_run_id=None, baseline=baseline.description)
    return shadow_evaluate_recommenders(sequences_dir, candidate, baseline, out_dir, config, embeddings_path,
                                        baseline_info=info)


def _finish(result: dict[str, Any], out_dir: str) -> dict[str, Any]:
    write_reports(result, out_dir)
    log.info("shadow evaluation: %s (%s)", result["decision"], "; ".join(result["reasons"]))
    return result


# --- reports ----------------------------------------------------------------------------------------------
def _num(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _grouped(rows: Sequence[dict]) -> dict[tuple[str, int], list[dict]]:
    out: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        out.setdefault((row["task"], row["delay"]), []).append(row)
    return out


def _catalog_line(result: dict[str, Any]) -> str:
    dated = result.get("catalog_launch_dates")
    ranked = f" ({dated} ranked only once launched)" if dated else ""
    return f"catalog: {result.get('catalog_size', '-')} titles{ranked}"


def render_markdown(result: dict[str, Any]) -> str:
    lines = ["# Shadow evaluation", "", f"**Decision: {result['decision']}**", ""]
    lines += [f"- {r}" for r in result.get("reasons", [])]
    lines += ["", f"Candidate: {result.get('candidate', '-')}  ", f"Baseline: {result.get('baseline', '-')}  ",
              f"Users: {result.get('n_users', 0)}, requests: {result.get('n_requests', 0)}, "
              f"{_catalog_line(result)}", ""]
    for (task, delay), rows in _grouped(result.get("rows", [])).items():
        lines += [f"## {task}, delay {delay}", "",
                  "| slice | metric | candidate | baseline | diff | CI | relative | users | requests |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['slice']} | {r['metric']} | {_num(r['candidate'])} | {_num(r['baseline'])} | "
                         f"{_num(r['diff'], True)} | [{_num(r['lower'], True)}, {_num(r['upper'], True)}] | "
                         f"{_num(r['relative'], True)} | {r['n_users']} | {r['n_requests']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def render_html(result: dict[str, Any]) -> str:
    e = html.escape
    color = "#1a7f37" if result["decision"] == PROMOTE else "#9a6700"
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Shadow evaluation</title><style>",
             "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,td:nth-child(2){text-align:left}"
             ".pos{color:#1a7f37}.neg{color:#cf222e}",
             "</style></head><body><h1>Shadow evaluation</h1>",
             f"<h2 style='color:{color}'>Decision: {e(result['decision'])}</h2><ul>"]
    parts += [f"<li>{e(r)}</li>" for r in result.get("reasons", [])]
    parts.append(f"</ul><p>Candidate: {e(str(result.get('candidate', '-')))}<br>"
                 f"Baseline: {e(str(result.get('baseline', '-')))}<br>Users: {result.get('n_users', 0)}, "
                 f"requests: {result.get('n_requests', 0)}, {e(_catalog_line(result))}</p>")
    for (task, delay), rows in _grouped(result.get("rows", [])).items():
        parts.append(f"<h3>{e(task)}, delay {delay}</h3><table><tr><th>slice</th><th>metric</th><th>candidate</th>"
                     "<th>baseline</th><th>diff</th><th>CI</th><th>relative</th><th>users</th><th>requests</th></tr>")
        for r in rows:
            cls = "pos" if _finite(r["lower"]) and r["lower"] > 0 else "neg" if _finite(r["upper"]) and r["upper"] < 0 else ""
            parts.append(f"<tr><td>{e(r['slice'])}</td><td>{e(r['metric'])}</td><td>{_num(r['candidate'])}</td>"
                         f"<td>{_num(r['baseline'])}</td><td class='{cls}'>{_num(r['diff'], True)}</td>"
                         f"<td>[{_num(r['lower'], True)}, {_num(r['upper'], True)}]</td>"
                         f"<td>{_num(r['relative'], True)}</td><td>{r['n_users']}</td><td>{r['n_requests']}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def write_reports(result: dict[str, Any], out_dir: str) -> None:
    """shadow.json (NaN written as NaN: Python's json reads it back), shadow.md, shadow.html."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, JSON_FILE), "w") as fh:
        json.dump(result, fh, indent=2, default=str)
    with open(os.path.join(out_dir, MARKDOWN_FILE), "w") as fh:
        fh.write(render_markdown(result))
    with open(os.path.join(out_dir, HTML_FILE), "w") as fh:
        fh.write(render_html(result))
