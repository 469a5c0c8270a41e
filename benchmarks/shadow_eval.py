"""Shadow-evaluation throughput at catalog scale: users/s for a full replay (3 delays, all slices,
bootstrap CIs) of synthetic sequences with a cheap dot-product candidate against popularity.
The candidate encodes each history once in `score_heads` (as a shared-backbone model does) and
reports how many histories it encoded.

    .venv/bin/python benchmarks/shadow_eval.py --users 100000 --titles 100000

Prints one line of figures (wall time excludes writing the synthetic data). Memory stays bounded
by batch_size x titles floats: no [users x catalog] matrix is ever built. `--launching F` gives a
fraction F of the titles a launch date inside the shadow window (titles.parquet), so each request
is ranked only over the titles launched by then, as a real catalog with launch dates is (0: none,
every title competes in every request).
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genrec.baselines import PopularityRecommender
from genrec.events import SEQUENCE_SCHEMA, TITLE_SCHEMA, TITLES_FILE, VOCAB_FILE, VOCAB_SCHEMA
from genrec.recommender import History, Recommender
from genrec.shadow import ShadowConfig, shadow_evaluate_recommenders


class DotProductRecommender(Recommender):
    """Query = mean vector of the last `window` history titles; scores = query . title vectors."""

    description = "dot-product benchmark model"

    def __init__(self, item_ids: Sequence[str], dim: int = 32, window: int = 20, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.table = rng.standard_normal((len(item_ids), dim)).astype(np.float32)
        self.row = {item: i for i, item in enumerate(item_ids)}
        self.window = window
        self.encoded = 0  # histories encoded (the "backbone" work)

    def set_catalog(self, item_ids: Sequence[str], vectors: np.ndarray | None = None) -> None:
        self.catalog = self.table[[self.row[i] for i in item_ids]]

    def encode(self, histories: Sequence[History]) -> np.ndarray:
        """[B, D] float32 queries: the per-history work a shared backbone does once."""
        self.encoded += len(histories)
        queries = np.zeros((len(histories), self.table.shape[1]), np.float32)
        for b, h in enumerate(histories):
            rows = [self.row[i] for i in h.items[-self.window:] if i in self.row]
            if rows:
                queries[b] = self.table[rows].mean(axis=0)
        return queries

    def score(self, histories: Sequence[History], task: str, delay: int = 0) -> np.ndarray:
        return self.encode(histories) @ self.catalog.T

    def score_heads(self, histories: Sequence[History], heads: Sequence[tuple[str, int]]) -> list[np.ndarray]:
        """Encode once, then one [B, D] x [D, C] product per head (a real model's heads differ)."""
        queries = self.encode(histories)
        return [queries @ self.catalog.T for _ in heads]


SHADOW_START = 2_000_000_000  # epoch seconds of the shadow window's first event (train: 1,000,000)


def _sequences(n_users: int, lengths: np.ndarray, n_titles: int, n_history: np.ndarray, rng, t0: int) -> pa.Table:
    total = int(lengths.sum())
    items = (rng.zipf(1.3, size=total) - 1) % n_titles
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    times = t0 + np.arange(total, dtype=np.int64) * 60
    names = np.char.add("t", items.astype(str)).astype(object)
    types = np.where(rng.random(total) < 0.8, "play", "add").astype(object)
    return pa.Table.from_arrays([
        pa.array([f"u{u}" for u in range(n_users)], pa.string()),
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(names, pa.string())),
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(types, pa.string())),
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(times, pa.int64())),
        pa.array(n_history, pa.int32()),
    ], schema=SEQUENCE_SCHEMA)


def write_data(root: str, n_users: int, n_titles: int, history: int, window: int, seed: int = 0,
               launching: float = 0.0) -> list[str]:
    rng = np.random.default_rng(seed)
    for split in ("train", "shadow"):
        os.makedirs(os.path.join(root, split), exist_ok=True)
    train_len = np.full(n_users, 5)
    pq.write_table(_sequences(n_users, train_len, n_titles, np.zeros(n_users, np.int32), rng, 1_000_000),
                   os.path.join(root, "train", "part-0.parquet"))
    hist = rng.integers(1, 2 * history, size=n_users)
    pq.write_table(_sequences(n_users, hist + window, n_titles, hist.astype(np.int32), rng, SHADOW_START),
                   os.path.join(root, "shadow", "part-0.parquet"))
    item_ids = [f"t{i}" for i in range(n_titles)]
    cold = rng.random(n_titles) < 0.05
    pq.write_table(pa.table({"item_id": item_ids, "index": np.arange(3, n_titles + 3), "count": np.ones(n_titles, np.int64),
                             "first_seen": np.zeros(n_titles, np.int64), "cold_start": cold}, schema=VOCAB_SCHEMA),
                   os.path.join(root, VOCAB_FILE))
    if launching > 0:  # launch dates spread over the shadow window's span of event times (one a minute)
        span = int((hist + window).sum()) * 60
        launch = np.where(rng.random(n_titles) < launching, SHADOW_START + rng.integers(0, span, n_titles), None)
        none = [None] * n_titles
        pq.write_table(pa.Table.from_pydict({"item_id": item_ids, "title": item_ids, "genres": none, "tags": none,
                                             "description": none, "launch_date": launch}, schema=TITLE_SCHEMA),
                       os.path.join(root, TITLES_FILE))
    return item_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--titles", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=20, help="mean events before the window")
    parser.add_argument("--window", type=int, default=2, help="window events per user")
    parser.add_argument("--launching", type=float, default=0.05,
                        help="fraction of titles launching inside the shadow window (0: no launch dates)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    if args.workdir:
        run(args, args.workdir)
    else:  # the synthetic data and the replay's outputs go with the run
        with tempfile.TemporaryDirectory(prefix="shadow-bench-") as root:
            run(args, root)


def run(args: argparse.Namespace, root: str) -> None:
    started = time.perf_counter()
    item_ids = write_data(root, args.users, args.titles, args.history, args.window, launching=args.launching)
    data_s = time.perf_counter() - started
    config = ShadowConfig(batch_size=args.batch_size, n_resamples=args.n_resamples)
    started = time.perf_counter()
    candidate = DotProductRecommender(item_ids)
    baseline = PopularityRecommender.from_sequences(root)
    result = shadow_evaluate_recommenders(root, candidate, baseline, out_dir=os.path.join(root, "out"), config=config)
    wall = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(f"shadow_eval users={result['n_users']} titles={args.titles} requests={result['n_requests']} "
          f"delays={','.join(map(str, config.delays))} tasks={','.join(result.get('tasks', []))} "
          f"rows={len(result['rows'])} histories_encoded={candidate.encoded} resamples={args.n_resamples} "
          f"launching={args.launching} launch_dated={result.get('catalog_launch_dates', 0)} cpus={os.cpu_count()} "
          f"wall_s={wall:.1f} users_per_s={result['n_users'] / wall:.0f} requests_per_s={result['n_requests'] / wall:.0f} "
          f"peak_rss_gb={peak_gb:.2f} (data generation {data_s:.1f}s, decision {result['decision']})")


if __name__ == "__main__":
    main()
