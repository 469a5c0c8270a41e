"""Tiny canonical sequences folders for model/data/training tests (written with pyarrow, seeded).

Users walk a ring of titles with a personal stride, so the next title is predictable from the last
two: a small model that learns anything beats popularity on it.
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genrec.events import NUM_RESERVED, SEQUENCE_SCHEMA, UNK_INDEX, VOCAB_SCHEMA


def _rows(rng, users, n_items, length, types, t0, history=0, prefix="u"):
    rows = []
    for u in range(users):
        stride = 1 + u % 3
        start = rng.integers(n_items)
        n = length + history
        items = [f"t{(start + stride * k) % n_items:04d}" for k in range(n)]
        ev = [types[k % len(types)] if k % 3 == 2 else types[0] for k in range(n)]
        ts = (t0 + np.cumsum(rng.integers(30, 4000, size=n))).tolist()
        rows.append({"user_id": f"{prefix}{u:04d}", "items": items, "event_types": ev, "timestamps": ts,
                     "n_history": history})
    return rows


def write_sequences(root: str, users: int = 24, n_items: int = 40, length: int = 20, shards: int = 2,
                    types: tuple[str, ...] = ("play", "like"), seed: int = 0, extra_titles: int = 0,
                    embedding_dim: int = 0, identical_pairs: bool = False) -> str:
    """Write train/ (n_history 0), validation/ and shadow/ (history + 4 window events), a vocabulary and,
    with embedding_dim > 0, an embeddings.parquet including `extra_titles` titles never seen in train."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    train = _rows(rng, users, n_items, length, types, 1_700_000_000)
    if identical_pairs:  # two distinct sequences alternating: row order decides which rank sees which
        train = [dict(train[i % 2], user_id=f"u{i:04d}") for i in range(users)]
    splits = {"train": train}
    for split, t0 in (("validation", 1_700_100_000), ("shadow", 1_700_200_000)):
        rows = _rows(np.random.default_rng(seed + len(split)), users, n_items, 4, types, t0, history=length)
        splits[split] = rows
    for split, rows in splits.items():
        os.makedirs(os.path.join(root, split), exist_ok=True)
        per = int(np.ceil(len(rows) / shards))
        for s in range(shards):
            part = rows[s * per:(s + 1) * per]
            if part:
                pq.write_table(pa.Table.from_pylist(part, schema=SEQUENCE_SCHEMA),
                               os.path.join(root, split, f"part-{s:05d}.parquet"))
    counts: dict[str, int] = {}
    for row in train:
        for item in row["items"]:
            counts[item] = counts.get(item, 0) + 1
    ordered = sorted(counts, key=lambda i: (-counts[i], i))
    all_titles = [f"t{i:04d}" for i in range(n_items + extra_titles)]
    index = {item: NUM_RESERVED + k for k, item in enumerate(ordered)}
    vocab = pa.table({
        "item_id": all_titles,
        "index": [index.get(t, UNK_INDEX) for t in all_titles],
        "count": [counts.get(t, 0) for t in all_titles],
        "first_seen": [1_700_000_000] * len(all_titles),
        "cold_start": [t not in counts for t in all_titles],
    }, schema=VOCAB_SCHEMA)
    pq.write_table(vocab, os.path.join(root, "vocabulary.parquet"))
    pq.write_table(pa.table({"item_id": all_titles, "title": all_titles}), os.path.join(root, "titles.parquet"))
    if embedding_dim:
        vec = np.random.default_rng(seed + 99).normal(size=(len(all_titles), embedding_dim)).astype(np.float32)
        pq.write_table(pa.table({"item_id": all_titles,
                                 "vector": pa.array(vec.tolist(), pa.list_(pa.float32())),
                                 "content_hash": [f"h{i}" for i in range(len(all_titles))]}),
                       os.path.join(root, "embeddings.parquet"))
    return root
