"""Sequences folder -> fixed-length training windows (numpy), each rank reading only its share.

Item ids become vocabulary indices with one vectorised `pyarrow.compute.index_in` over all events;
targets for every (task, depth) are computed per user with `searchsorted`, never per event.
"""
from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genrec.errors import InputError
from genrec.events import (ITEM_ID, NEVER, NUM_RESERVED, PAD_INDEX, SEQUENCE_SCHEMA, UNK_INDEX, USER_ID,
                           VOCAB_FILE)

RESERVED_NAMES = ("<pad>", "<unk>", "<mask>")
NO_TARGET = PAD_INDEX


@dataclass(frozen=True)
class Vocabulary:
    """Model vocabulary: row i of the item table is `item_ids[i]` (reserved rows first)."""

    item_ids: tuple[str, ...]
    counts: np.ndarray  # [V] int64 train-window events (0 for reserved rows)
    first_seen: np.ndarray | None = None  # [V] int64 epoch seconds of each title's first event (0: unknown)

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def fingerprint(self) -> str:
        """sha256 over the ordered ids: two models share item rows iff fingerprints match."""
        return hashlib.sha256("\n".join(self.item_ids).encode()).hexdigest()[:16]

    def lookup(self, ids: pa.Array | list[str]) -> np.ndarray:
        """[N] int64 indices; ids not in the vocabulary -> UNK_INDEX."""
        pos = pc.index_in(pa.array(ids, pa.string()) if isinstance(ids, list) else ids,
                          value_set=pa.array(self.item_ids[NUM_RESERVED:], pa.string()))
        return (pc.fill_null(pc.add(pos, NUM_RESERVED), UNK_INDEX)).to_numpy(zero_copy_only=False).astype(np.int64)

    def positions(self, ids: list[str]) -> np.ndarray:
        """[N] int64 row in the item table, -1 for ids this vocabulary does not know."""
        idx = self.lookup(ids)
        return np.where(idx == UNK_INDEX, -1, idx)


def read_vocabulary(path: str) -> Vocabulary:
    """Vocabulary from vocabulary.parquet (titles mapped to UNK there are not model rows)."""
    if os.path.isdir(path):
        path = os.path.join(path, VOCAB_FILE)
    try:
        present = pq.read_schema(path).names  # first_seen is optional (older vocabularies lack it)
        table = pq.read_table(path, columns=[c for c in (ITEM_ID, "index", "count", "first_seen") if c in present])
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: cannot read vocabulary ({exc})") from None
    table = table.filter(pc.greater_equal(table["index"], NUM_RESERVED)).sort_by("index")
    index = table["index"].to_numpy()
    if len(index) == 0:
        raise InputError(f"{path}: vocabulary has no items")
    if not np.array_equal(index, np.arange(NUM_RESERVED, NUM_RESERVED + len(index))):
        raise InputError(f"{path}: item indices are not contiguous from {NUM_RESERVED}")
    counts = np.concatenate([np.zeros(NUM_RESERVED, np.int64), table["count"].to_numpy().astype(np.int64)])
    first_seen = None
    if "first_seen" in table.column_names:
        first_seen = np.concatenate([np.zeros(NUM_RESERVED, np.int64),
                                     table["first_seen"].to_numpy(zero_copy_only=False).astype(np.int64)])
    return Vocabulary(RESERVED_NAMES + tuple(table[ITEM_ID].to_pylist()), counts, first_seen)


def list_shards(data_dir: str, split: str) -> list[str]:
    shards = sorted(glob.glob(os.path.join(data_dir, split, "*.parquet")))
    if not shards:
        raise InputError(f"{os.path.join(data_dir, split)}: no Parquet shards")
    return shards


def read_split(data_dir: str, split: str, rank: int = 0, world_size: int = 1) -> pa.Table:
    """This rank's share of a split: whole shards (shards[rank::world]) when there are at least as
    many shards as ranks, else rows rank::world of the concatenated shards. Deterministic."""
    shards = list_shards(data_dir, split)
    columns = list(SEQUENCE_SCHEMA.names)
    mine = shards[rank::world_size] if len(shards) >= world_size else shards
    tables = []
    for path in mine:
        try:
            tables.append(pq.read_table(path, columns=columns))
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"{path}: cannot read sequences ({exc})") from None
    table = pa.concat_tables(tables).combine_chunks()
    if len(shards) < world_size:
        table = table.take(np.arange(rank, len(table), world_size))
    return table


def task_names(table: pa.Table) -> tuple[str, ...]:
    """Event types in a split, sorted: each is a task."""
    return tuple(sorted(t for t in pc.unique(pc.list_flatten(table["event_types"])).to_pylist() if t))


def gap_buckets(timestamps: np.ndarray, num_buckets: int) -> np.ndarray:
    """[n] int64: floor(log2(1 + seconds since the previous event)), 0 for the first."""
    gaps = np.diff(timestamps, prepend=timestamps[:1]).clip(min=0)
    return np.minimum(np.floor(np.log2(gaps + 1.0)), num_buckets - 1).astype(np.int64)


@dataclass(frozen=True)
class Windows:
    """Fixed-length windows, padding at the end.

    items, types, gaps [W, L] int64; targets [W, H, L] int64 (H = tasks * (mtp_depth + 1); head
    task*(k+1)+j at position t holds the first event of that task at position >= t + 1 + j, 0 when
    none: j = 0 is the task's next event, j = d what a cache filled at t serves d events later);
    predict [W, L] bool: the event after t is one of the split's target events (validation);
    next_task [W, L] int64: task of the event after t (-1 when none); users [W] user ids;
    starts [W] int64: where the window starts in its user's sequence; target_times [W, H, L] int64:
    epoch seconds of each target event (0 when none), which says how new its title was then.
    """

    items: np.ndarray
    types: np.ndarray
    gaps: np.ndarray
    targets: np.ndarray
    predict: np.ndarray
    next_task: np.ndarray
    users: np.ndarray
    starts: np.ndarray
    target_times: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


def window_spans(n: int, max_len: int, stride: int = 0) -> list[tuple[int, int, int]]:
    """(start, end, own) of each window over a sequence of n events, the last window first: windows
    end every `stride` events (0: max_len) from the end back to the first that starts at 0; a
    window's targets are its positions >= own (the positions before `own` are also in the next,
    earlier window, which has more events before them)."""
    step = stride or max_len
    spans = []
    for end in range(n, 0, -step):
        start = max(0, end - max_len)
        spans.append((start, end, start + max_len - step if start > 0 else 0))
        if start == 0:
            break
    return spans


def build_windows(table: pa.Table, vocab: Vocabulary, tasks: tuple[str, ...], max_len: int,
                  mtp_depth: int, time_buckets: int = 32, predictions_only: bool = False,
                  stride: int = 0) -> Windows:
    """Cut each user's sequence into windows of `max_len` events from the end; targets look at the
    whole sequence, so a window's last position still predicts the next window's first event.
    `predictions_only` keeps only windows with at least one target event (validation).

    `stride` < max_len (0: max_len) makes windows overlap, each ending `stride` events before the
    next one; the overlapped positions keep their targets only in the earlier window, where more
    events precede them. Every target is still counted once, and in a sequence longer than a window
    each target past the first window has at least max_len - stride events of context instead of
    none at a window's start (more compute per epoch for long sequences)."""
    depth = mtp_depth + 1
    lengths = pc.list_value_length(table["items"]).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat_items = vocab.lookup(pc.list_flatten(table["items"]))
    type_pos = pc.index_in(pc.list_flatten(table["event_types"]), value_set=pa.array(list(tasks), pa.string()))
    flat_types = pc.fill_null(type_pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)  # -1: unknown
    flat_times = pc.list_flatten(table["timestamps"]).to_numpy(zero_copy_only=False).astype(np.int64)
    n_history = table["n_history"].to_numpy(zero_copy_only=False).astype(np.int64)
    users = table[USER_ID].to_numpy(zero_copy_only=False)

    out = {k: [] for k in ("items", "types", "gaps", "targets", "predict", "next_task", "users", "starts",
                           "target_times")}
    for row in range(len(table)):
        lo, hi = offsets[row], offsets[row + 1]
        n = hi - lo
        if n == 0:
            continue
        items, types = flat_items[lo:hi], flat_types[lo:hi]
        gaps = gap_buckets(flat_times[lo:hi], time_buckets)
        targets = np.zeros((len(tasks) * depth, n), np.int64)
        target_times = np.zeros((len(tasks) * depth, n), np.int64)
        times = flat_times[lo:hi]
        steps = np.arange(n)
        for task in range(len(tasks)):
            where = np.flatnonzero(types == task)
            for j in range(depth):
                # First event of this task at position >= t + 1 + j: what a cache filled after event t
                # is asked for j events later (the shadow replay's delay j), whatever types come between.
                k = np.searchsorted(where, steps + j, side="right")
                ok = k < len(where)
                targets[task * depth + j, ok] = items[where[k[ok]]]
                target_times[task * depth + j, ok] = times[where[k[ok]]]
        next_task = np.full(n, -1, np.int64)
        next_task[:-1] = types[1:]
        predict = np.zeros(n, bool)
        predict[:-1] = steps[1:] >= max(n_history[row], 1)
        predict &= next_task >= 0
        for start, end, own in window_spans(n, max_len, stride):
            mine = np.arange(start, end) >= own
            if predictions_only and not (predict[start:end] & mine).any():
                continue
            pad = max_len - (end - start)
            out["items"].append(np.pad(items[start:end], (0, pad)))
            out["types"].append(np.pad(np.where(types[start:end] >= 0, types[start:end] + 1, 0), (0, pad)))
            out["gaps"].append(np.pad(gaps[start:end], (0, pad)))
            out["targets"].append(np.pad(targets[:, start:end] * mine, ((0, 0), (0, pad))))
            out["predict"].append(np.pad(predict[start:end] & mine, (0, pad)))
            out["next_task"].append(np.pad(next_task[start:end], (0, pad), constant_values=-1))
            out["users"].append(users[row])
            out["starts"].append(start)
            out["target_times"].append(np.pad(target_times[:, start:end] * mine, ((0, 0), (0, pad))))
    if not out["items"]:
        shape = (0, max_len)
        return Windows(np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.int64),
                       np.zeros((0, len(tasks) * depth, max_len), np.int64), np.zeros(shape, bool),
                       np.zeros(shape, np.int64), np.zeros(0, object), np.zeros(0, np.int64),
                       np.zeros((0, len(tasks) * depth, max_len), np.int64))
    return Windows(*(np.stack(out[k]) for k in ("items", "types", "gaps", "targets", "predict", "next_task")),
                   np.asarray(out["users"], dtype=object), np.asarray(out["starts"], np.int64),
                   np.stack(out["target_times"]))


def launch_times(vocab: Vocabulary, data_start: int, new_seconds: int) -> np.ndarray:
    """[V] int64 when each title launched, for titles that launched inside the data (first seen more
    than `new_seconds` after `data_start`); NEVER for the rest, which may have launched before the
    data begins and so cannot be told apart from back catalogue."""
    launch = np.full(len(vocab), NEVER, np.int64)
    if vocab.first_seen is not None and new_seconds > 0:
        inside = vocab.first_seen > data_start + new_seconds
        launch[inside] = vocab.first_seen[inside]
    return launch


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> np.ndarray:
    """Window indices of one step's batch: a fresh seeded permutation per epoch, read in order, so
    the data position is the step number alone (exact resume without saving iterator state)."""
    start = step * batch_size
    idx = []
    while len(idx) < batch_size:
        epoch, offset = divmod(start + len(idx), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        idx.extend(perm[offset:offset + batch_size - len(idx)].tolist())
    return np.asarray(idx, dtype=np.int64)


class BucketedBatches:
    """Batches of windows of similar length, so a batch padded only to its longest window wastes
    little compute (on ml-latest-small with max_len 200, 44% of a random batch is padding).

    Each epoch a seeded permutation is cut into pools of `pool` batches; each pool is sorted by
    length and cut into batches; the epoch's batches are then ordered by length and shuffled with a
    permutation shared by every rank (`shared_seed`), so the ranks of one step get batches of about
    the same length and none waits long for the others. That needs the same number of batches per
    epoch on every rank: `per_epoch` (at least this rank's own count; the trainer passes the largest
    over ranks). Like `batch_indices`, a batch is a function of the step alone (exact resume); an
    epoch with more slots than windows tops its batches up from its own start."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, shared_seed: int, pool: int,
                 per_epoch: int = 0) -> None:
        if batch_size < 1 or pool < 1:
            raise ValueError(f"batch_size {batch_size} and pool {pool} must be >= 1")
        self.lengths = np.asarray(lengths, np.int64)
        self.batch_size, self.seed, self.shared_seed, self.pool = batch_size, seed, shared_seed, pool
        self.per_epoch = max(per_epoch, -(-len(self.lengths) // batch_size))
        self._epoch, self._batches = -1, np.zeros((0, batch_size), np.int64)

    def __call__(self, step: int) -> np.ndarray:
        epoch, b = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, self._epoch_batches(epoch)
        return self._batches[b]

    def _epoch_batches(self, epoch: int) -> np.ndarray:
        """[per_epoch, batch_size] window indices of one epoch, in the order they are read."""
        order = np.resize(np.random.default_rng([self.seed, epoch]).permutation(len(self.lengths)),
                          self.per_epoch * self.batch_size)
        span = self.pool * self.batch_size
        for lo in range(0, len(order), span):
            chunk = order[lo:lo + span]
            order[lo:lo + span] = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
        batches = order.reshape(self.per_epoch, self.batch_size)
        batches = batches[np.argsort(-self.lengths[batches].max(axis=1), kind="stable")]
        return batches[np.random.default_rng([self.shared_seed, epoch, 1]).permutation(self.per_epoch)]
