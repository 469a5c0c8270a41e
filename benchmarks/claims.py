"""Paired bootstrap checks of three modelling claims on the planted synthetic data (genrec.synth).

(a) sampled softmax + projected head stays within 2% of full-softmax (unprojected) MRR;
(b) multi-token prediction beats next-token-only when serving is cached (delay >= 1);
(c) on cold-start titles, collaborative-embedding masking beats no masking: checked for random ID
    masking (mask_prob) and for new-title masking (mask_new_days), each with its all-title MRR beside it.

Each claim trains a base model and one variant through the real `launch_training`, replays the
shadow window with `genrec.shadow` (users are the resampled unit) and prints one JSON line per
claim with the candidate/baseline MRR, the difference, its 95% interval and whether it holds.

    python benchmarks/claims.py [--users 1500 --steps 300 --preset 500K --encoder minilm --train-seed 0]
    python benchmarks/claims.py --claims b --preset 1M --steps 600   # claim (b) as README measures it
    python benchmarks/claims.py --claims a --workdir W --reuse   # variants W already holds are not retrained
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genrec.events import MODEL_METRICS_FILE, NUM_RESERVED, SEQUENCE_SCHEMA, UNK_INDEX, VOCAB_SCHEMA
from genrec.shadow import ShadowConfig, find_row, shadow_evaluate_recommenders
from genrec.training import TrainConfig, launch_training, load_recommender

DAY = 86_400


def synthetic_sequences(out_dir: str, users: int, seed: int) -> str:
    """Synthetic events -> canonical sequences folder split by time: train before the last 14 days,
    validation the week after, shadow the final week (each with all earlier events as history)."""
    from genrec.synth import END_TIME, SynthConfig, generate

    data = generate(SynthConfig(users=users, seed=seed))
    ev = data.events.take(pc.sort_indices(data.events, [("user_id", "ascending"), ("timestamp", "ascending")]))
    t_val, t_shadow = END_TIME - 14 * DAY, END_TIME - 7 * DAY
    uid = ev["user_id"].to_numpy(zero_copy_only=False)
    items = ev["item_id"].to_numpy(zero_copy_only=False)
    types = ev["event_type"].to_numpy(zero_copy_only=False)
    times = ev["timestamp"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, uid[1:] != uid[:-1], True])
    rows = {"train": [], "validation": [], "shadow": []}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        t = times[lo:hi]
        n_train, n_val = int((t < t_val).sum()), int((t < t_shadow).sum())

        def row(end: int, n_history: int) -> dict:
            return {"user_id": uid[lo], "items": items[lo:lo + end].tolist(),
                    "event_types": types[lo:lo + end].tolist(), "timestamps": t[:end].tolist(),
                    "n_history": n_history}

        if n_train >= 2:
            rows["train"].append(row(n_train, 0))
        if n_val > n_train:
            rows["validation"].append(row(n_val, n_train))
        if hi - lo > n_val:
            rows["shadow"].append(row(hi - lo, n_val))
    for split, split_rows in rows.items():
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        pq.write_table(pa.Table.from_pylist(split_rows, schema=SEQUENCE_SCHEMA),
                       os.path.join(out_dir, split, "part-00000.parquet"))
    train_items = [i for r in rows["train"] for i in r["items"]]
    ids, counts = np.unique(np.asarray(train_items, dtype=object).astype(str), return_counts=True)
    order = np.lexsort((ids, -counts))
    index = {ids[k]: NUM_RESERVED + r for r, k in enumerate(order)}
    count = dict(zip(ids.tolist(), counts.tolist()))
    first = {}
    for item, ts in zip(items.tolist(), times.tolist()):
        first[item] = min(ts, first.get(item, ts))
    titles = data.titles["item_id"].to_pylist()
    vocab = pa.table({"item_id": titles, "index": [index.get(i, UNK_INDEX) for i in titles],
                      "count": [count.get(i, 0) for i in titles],
                      "first_seen": [first.get(i, END_TIME) for i in titles],
                      "cold_start": [first.get(i, END_TIME) >= t_shadow for i in titles]}, schema=VOCAB_SCHEMA)
    pq.write_table(vocab, os.path.join(out_dir, "vocabulary.parquet"))
    pq.write_table(data.titles, os.path.join(out_dir, "titles.parquet"))
    return out_dir


def shadow_row(result: dict, task: str, delay: int, slice_: str) -> dict:
    row = find_row(result["rows"], task, delay, slice_)
    if row is None:
        raise SystemExit(f"no shadow row for {task}/{delay}/{slice_}: {result.get('reasons')}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--preset", default="500K",
                        help="backbone preset of every variant (README: 500K for a and c, 1M with --steps 600 for b)")
    parser.add_argument("--encoder", default="minilm", help="semantic encoder for titles (minilm | hashing)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")
    parser.add_argument("--train-seed", type=int, default=0, help="seed of every model's training")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--task", default="play")
    parser.add_argument("--claims", default="a,b,c", help="which claims to check (trains only what they need)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a variant already trained in --workdir (its metrics.json, written last, exists)")
    parser.add_argument("--item-dim", type=int, default=TrainConfig.item_dim,
                        help="projected head width of the production head (claim a's base and every variant)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per training (0: all cores)")
    parser.add_argument("--optimizer", default=TrainConfig.optimizer, help="of every variant (auto | adamw | muon)")
    args = parser.parse_args()
    from genrec.semantic import EmbedConfig, embed_metadata

    work = args.workdir or tempfile.mkdtemp(prefix="genrec-claims-")
    seq = synthetic_sequences(os.path.join(work, "sequences"), args.users, args.seed)
    emb = os.path.join(work, "embeddings.parquet")
    embed_metadata(os.path.join(seq, "titles.parquet"), emb, EmbedConfig(encoder=args.encoder))
    # The production head: sampled softmax (in-batch + uniform, logQ) through the projected head, at
    # the pipeline's defaults otherwise (new-title masking included). Each claim changes one thing
    # and keeps the rest, so a difference is that thing's (an earlier version stacked MTP and masking
    # on every variant, which made the head comparison about their interaction instead).
    base = TrainConfig(preset=args.preset, max_steps=args.steps, loss="sampled", checkpoint_every=0,
                       num_threads=args.threads, seed=args.train_seed, item_dim=args.item_dim,
                       optimizer=args.optimizer)
    variants = {
        "base": base,
        "full_unprojected": dataclasses.replace(base, loss="full", item_dim=0),
        "mtp": dataclasses.replace(base, mtp_depth=2),
        "no_masking": dataclasses.replace(base, mask_new_days=0.0),
        "random_masking": dataclasses.replace(base, mask_new_days=0.0, mask_prob=0.2),
    }
    # (claim, candidate, baseline, task, delay, slice, holds)
    claims = [
        ("a: sampled+projected within 2% of full softmax", "base", "full_unprojected", args.task, 0, "all",
         lambda r: r["lower"] >= -0.02 * r["baseline"]),
        ("b: MTP beats next-token-only at delay 1", "mtp", "base", args.task, 1, "all", lambda r: r["lower"] > 0),
        ("b: MTP beats next-token-only at delay 2", "mtp", "base", args.task, 2, "all", lambda r: r["lower"] > 0),
        ("c: new-title masking (default) beats no masking on cold-start titles", "base", "no_masking", args.task, 0,
         "cold_start", lambda r: r["lower"] > 0),
        ("c: new-title masking, all titles (context)", "base", "no_masking", args.task, 0, "all", None),
        ("c: random ID masking p=0.2 beats no masking on cold-start titles", "random_masking", "no_masking",
         args.task, 0, "cold_start", lambda r: r["lower"] > 0),
        ("c: random ID masking, all titles (context)", "random_masking", "no_masking", args.task, 0, "all", None),
    ]
    claims = [c for c in claims if c[0][0] in args.claims.split(",")]
    needed = {c[1] for c in claims} | {c[2] for c in claims}
    dirs = {}
    for name, cfg in ((n, c) for n, c in variants.items() if n in needed):
        started = time.perf_counter()
        dirs[name] = os.path.join(work, name)
        done = os.path.join(dirs[name], MODEL_METRICS_FILE)  # written last: its model is whole
        if args.reuse and os.path.exists(done):
            with open(done) as f:
                m, status = json.load(f), {"reused": name}
        else:
            m = launch_training(seq, dirs[name], cfg, embeddings_path=emb)
            status = {"trained": name, "seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps({**status, "val_mrr": {t: round(v["mrr"], 4) for t, v in m["tasks"].items()}}), flush=True)
    replays: dict[tuple[str, str], dict] = {}  # one shadow replay per (candidate, baseline) pair
    for claim, candidate, baseline, task, delay, slice_, holds in claims:
        if (candidate, baseline) not in replays:
            replays[candidate, baseline] = shadow_evaluate_recommenders(
                seq, load_recommender(dirs[candidate], emb), load_recommender(dirs[baseline], emb),
                config=ShadowConfig(delays=(0, 1, 2)), embeddings_path=emb)
        r = shadow_row(replays[candidate, baseline], task, delay, slice_)
        print(json.dumps({"claim": claim, "task": task, "delay": delay, "slice": slice_, "candidate_mrr": r["candidate"],
                          "baseline_mrr": r["baseline"], "diff": r["diff"], "ci95": [r["lower"], r["upper"]],
                          "relative": r["relative"], "n_users": r["n_users"],
                          "holds": None if holds is None else bool(holds(r))}), flush=True)


if __name__ == "__main__":
    main()
