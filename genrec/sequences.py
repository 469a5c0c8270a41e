"""Beam extraction: raw events -> per-user, time-ordered sequences split by time, plus vocabulary,
titles, dead letters, metrics and data statistics.

Shape of the pipeline (every element is an Arrow table, never one Python object per event):

    read units (text/JSONL byte chunk, Parquet row group) --Parse--> (user shard, events) + dead letters
        -> min/max timestamp (side input: split boundaries)
        -> GroupByKey(user shard) --BuildShard--> train/validation/shadow Parquet shards + shard summary
        -> all summaries --Finalize--> vocabulary, titles, metrics, schema, statistics, summary.html

Users are hashed into `num_shards` shards, so each output shard is built by one worker from one group,
sorted and split with pyarrow/numpy. `extract_sequences_local` runs the same functions in one process
with no Beam: the benchmark's reference, and a cross-check in tests.
"""
from __future__ import annotations

import io
import json
import logging
import re
import time
import zlib
from dataclasses import dataclass, field
from collections import Counter
from typing import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genrec import statistics as stats_mod
from genrec.errors import ConfigError, GenrecError, InputError
from genrec.events import (
    DEAD_LETTER_DIR, EVENT_TYPE, EXTRACT_METRICS_FILE, ITEM_ID, NUM_RESERVED, SEQUENCE_SCHEMA, SPLITS, TIMESTAMP,
    TITLES_FILE, UNK_INDEX, USER_ID, VOCAB_FILE, VOCAB_SCHEMA, WEIGHT,
)
from genrec.sources import files
from genrec.sources.layout import SourceSpec, resolve
from genrec.sources.normalize import ORDER, RowLimits, is_derived
from genrec.sources.titles import complete_titles, read_titles
from genrec.sources.units import ReadUnit, plan_units, read_unit

log = logging.getLogger(__name__)
DAY = 86_400


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of one extraction (all with defaults; the CLI and KFP component pass the first three)."""

    shadow_days: float = 7.0  # last N days of the data's time range = shadow window
    validation_days: float = 7.0  # the N days before the shadow window = validation window
    max_len: int = 200  # most recent events kept per user as history (and for train sequences)
    num_shards: int = 4  # output Parquet shards per split (= user shards built in parallel)
    like_threshold: float = 4.0  # MovieLens ratings >= this also produce a `like` event
    drop_exact_duplicates: bool = True  # same user, item, timestamp, type and weight: keep the first
    far_future_slack_days: float = 2.0  # timestamps later than now + slack are dead-lettered
    now: int | None = None  # reference time for the far-future rule (epoch s); None = wall clock
    top_items: int = 20  # items listed in summary.html and the statistics
    text_chunk_mb: float = 64.0  # text/JSONL files are read in chunks of this size (Parquet: per row group)

    def __post_init__(self) -> None:
        if self.shadow_days <= 0 or self.validation_days < 0:
            raise ConfigError(f"shadow_days must be > 0 and validation_days >= 0 (got {self.shadow_days}, {self.validation_days})")
        if self.max_len < 1 or self.num_shards < 1:
            raise ConfigError(f"max_len and num_shards must be >= 1 (got {self.max_len}, {self.num_shards})")

    def row_limits(self) -> RowLimits:
        now = self.now if self.now is not None else int(time.time())
        return RowLimits(max_timestamp=int(now + self.far_future_slack_days * DAY))


@dataclass(frozen=True)
class Boundaries:
    """Split boundaries in epoch seconds: train < validation_start <= validation < shadow_start <= shadow <= end."""

    start: int
    validation_start: int
    shadow_start: int
    end: int

    @classmethod
    def from_range(cls, low: int, high: int, config: ExtractConfig) -> "Boundaries":
        shadow_start = high - int(round(config.shadow_days * DAY))
        return cls(low, shadow_start - int(round(config.validation_days * DAY)), shadow_start, high)


# --- Arrow helpers -------------------------------------------------------------------------------------
def to_ipc(table: pa.Table) -> bytes:
    """Table -> Arrow IPC stream bytes (what crosses Beam's shuffle: one bytes element per batch)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def user_shards(users: pa.Array | pa.ChunkedArray, num_shards: int) -> np.ndarray:
    """Stable shard per event [N] int (CRC32 of the user id, so every worker and run agrees)."""
    encoded = pc.dictionary_encode(users).combine_chunks() if isinstance(users, pa.ChunkedArray) else pc.dictionary_encode(users)
    per_user = np.array([zlib.crc32(u.encode()) % num_shards for u in encoded.dictionary.to_pylist()], dtype=np.int64)
    return per_user[encoded.indices.to_numpy(zero_copy_only=False)] if len(per_user) else np.zeros(0, np.int64)


def partition_by_shard(events: pa.Table, num_shards: int) -> Iterator[tuple[int, pa.Table]]:
    """Split one batch of events into (shard, events of that shard's users)."""
    if events.num_rows == 0:
        return
    shards = user_shards(events.column(USER_ID), num_shards)
    order = np.argsort(shards, kind="stable")
    counts = np.bincount(shards, minlength=num_shards)
    ordered = events.take(pa.array(order))
    offset = 0
    for shard, count in enumerate(counts):
        if count:
            yield shard, ordered.slice(offset, int(count))
        offset += int(count)


def shard_path(out_dir: str, split: str, shard: int, num_shards: int) -> str:
    return files.join(out_dir, split, f"part-{shard:05d}-of-{num_shards:05d}.parquet")


def write_parquet(table: pa.Table, uri: str) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, use_dictionary=False)  # ids are mostly distinct: dictionaries cost time
    files.write_bytes(uri, buffer.getvalue())


# --- per-shard work --------------------------------------------------------------------------------------
@dataclass
class ShardSummary:
    """What a shard (or, after merging, the whole data set) reports to the final step."""

    shards: set = field(default_factory=set)
    input_rows: int = 0
    dead_letter: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    derived_read: int = 0  # likes derived while reading, before duplicates were dropped
    derived_events: int = 0  # likes that survived de-duplication
    output_events: int = 0
    users: Counter = field(default_factory=Counter)  # split -> users; "all" -> users with any event
    split_events: Counter = field(default_factory=Counter)
    lengths: dict = field(default_factory=dict)  # split -> Counter(sequence length -> users)
    items: pa.Table | None = None  # item_id, count (train window), total, first_seen
    chunks: list = field(default_factory=list)  # (path, byte_start, owned lines, dead-letter file or None)
    event_stats: stats_mod.EventStats = field(default_factory=stats_mod.EventStats)

    def merge(self, other: "ShardSummary") -> "ShardSummary":
        items = [t for t in (self.items, other.items) if t is not None]
        lengths = {s: self.lengths.get(s, Counter()) + other.lengths.get(s, Counter()) for s in set(self.lengths) | set(other.lengths)}
        return ShardSummary(
            shards=self.shards | other.shards, input_rows=self.input_rows + other.input_rows,
            dead_letter=self.dead_letter + other.dead_letter, dropped=self.dropped + other.dropped,
            derived_read=self.derived_read + other.derived_read, derived_events=self.derived_events + other.derived_events,
            output_events=self.output_events + other.output_events, users=self.users + other.users,
            split_events=self.split_events + other.split_events, lengths=lengths,
            items=pa.concat_tables(items) if items else None, chunks=self.chunks + other.chunks,
            event_stats=self.event_stats.merge(other.event_stats),
        )


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """Dictionary codes [N] int64 of a string column (equal strings, equal codes)."""
    return pc.dictionary_encode(column.combine_chunks()).indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _exact_duplicates(events: pa.Table, run_id: np.ndarray) -> np.ndarray:
    """Mask [N] of events repeating an earlier one's user, item, timestamp, type and weight.

    `events` is sorted by (user, timestamp, order) and `run_id` numbers its (user, timestamp) runs,
    so duplicates share a run; a lexsort inside runs puts them side by side, the first in input order
    leading (numpy on integer codes: far cheaper than hashing five columns).
    """
    duplicate = np.zeros(events.num_rows, bool)
    candidates = np.flatnonzero(np.bincount(run_id)[run_id] > 1)  # only shared (user, timestamp) runs
    if len(candidates) == 0:
        return duplicate
    rows = pa.array(candidates)
    weights = events.column(WEIGHT).take(rows).to_numpy(zero_copy_only=False).astype(np.float64)
    weight_key = np.where(np.isnan(weights), np.inf, weights)
    item, kind = _codes(events.column(ITEM_ID).take(rows)), _codes(events.column(EVENT_TYPE).take(rows))
    order, run = events.column(ORDER).take(rows).to_numpy(), run_id[candidates]
    perm = np.lexsort((order, weight_key, kind, item, run))
    same = np.ones(len(perm) - 1, bool)
    for key in (run, item, kind, weight_key):
        same &= key[perm][1:] == key[perm][:-1]
    duplicate[candidates[perm[1:][same]]] = True
    return duplicate


def _last_k(group: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Mask of the last k rows with mask=True in each group (rows sorted by group, then time)."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return mask.copy()
    g = group[idx]
    is_last = np.r_[g[1:] != g[:-1], True]
    group_end = np.flatnonzero(is_last)  # position (in idx) of each group's last masked row
    ends = np.repeat(group_end, np.diff(np.r_[-1, group_end]))
    keep = (ends - np.arange(len(idx))) < k
    out = np.zeros_like(mask)
    out[idx[keep]] = True
    return out


def _sequences(events: pa.Table, group: np.ndarray, users: pa.Array, history: np.ndarray, window: np.ndarray) -> pa.Table:
    """Rows history|window (sorted by user, time) -> one SEQUENCE_SCHEMA row per user with a window event."""
    n_groups = len(users)
    has_window = np.bincount(group[window], minlength=n_groups) > 0
    selected = (history | window) & has_window[group]
    idx = np.flatnonzero(selected)
    g = group[idx]
    counts = np.bincount(g, minlength=n_groups)[has_window]
    n_history = np.bincount(g[history[idx]], minlength=n_groups)[has_window]
    offsets = pa.array(np.r_[0, np.cumsum(counts)].astype(np.int32))
    take = pa.array(idx)

    def lists(column: str) -> pa.ListArray:
        return pa.ListArray.from_arrays(offsets, events.column(column).take(take).combine_chunks())

    return pa.table(
        {
            USER_ID: users.filter(pa.array(has_window)),
            "items": lists(ITEM_ID),
            "event_types": lists(EVENT_TYPE),
            "timestamps": lists(TIMESTAMP),
            "n_history": pa.array(n_history.astype(np.int32)),
        },
        schema=SEQUENCE_SCHEMA,
    )


def _user_starts(users: pa.Array) -> np.ndarray:
    """Flags [N] bool of each user's first row in a column sorted by user."""
    if len(users) == 0:
        return np.zeros(0, bool)
    return np.r_[True, pc.not_equal(users.slice(1), users.slice(0, len(users) - 1)).to_numpy(zero_copy_only=False)]


def build_shard(events: pa.Table, bounds: Boundaries, config: ExtractConfig) -> tuple[dict[str, pa.Table], ShardSummary]:
    """One user shard's events (any order) -> its split tables and summary."""
    summary = ShardSummary()
    events = events.take(pc.sort_indices(events, [(USER_ID, "ascending"), (TIMESTAMP, "ascending"), (ORDER, "ascending")]))
    user_col = events.column(USER_ID).combine_chunks()
    user_starts = _user_starts(user_col)
    derived = is_derived(events.column(ORDER))
    if config.drop_exact_duplicates:
        ts = events.column(TIMESTAMP).to_numpy()
        run_id = np.cumsum(user_starts | np.r_[True, ts[1:] != ts[:-1]])
        duplicate = _exact_duplicates(events, run_id)
        if duplicate.any():
            summary.dropped["exact_duplicate"] += int((duplicate & ~derived).sum())
            keep = pa.array(~duplicate)
            events, user_col = events.filter(keep), user_col.filter(keep)
            user_starts = _user_starts(user_col)
            derived = derived[~duplicate]
    summary.derived_events = int(derived.sum())
    summary.output_events = events.num_rows
    group = np.cumsum(user_starts) - 1
    users = user_col.filter(pa.array(user_starts))
    ts = events.column(TIMESTAMP).to_numpy()
    in_train = ts < bounds.validation_start
    in_validation = (ts >= bounds.validation_start) & (ts < bounds.shadow_start)
    in_shadow = ts >= bounds.shadow_start
    nothing = np.zeros(len(ts), bool)
    k = config.max_len
    tables = {
        "train": _sequences(events, group, users, nothing, _last_k(group, in_train, k)),
        "validation": _sequences(events, group, users, _last_k(group, in_train, k), in_validation),
        "shadow": _sequences(events, group, users, _last_k(group, ~in_shadow, k), in_shadow),
    }
    for split, table in tables.items():
        summary.users[split] = table.num_rows
        summary.split_events[split] = int(pc.sum(pc.list_value_length(table.column("items"))).as_py() or 0)
        summary.lengths[split] = stats_mod.length_counts(pc.list_value_length(table.column("items")).to_numpy(zero_copy_only=False))
    summary.users["all"] = len(users)
    train_flag = pa.array(in_train.astype(np.int64))
    items = pa.table({ITEM_ID: events.column(ITEM_ID), "count": train_flag, "total": pa.array(np.ones(len(ts), np.int64)),
                      "first_seen": events.column(TIMESTAMP)})
    summary.items = _merge_items(items)
    summary.event_stats = stats_mod.EventStats.of(events, bounds.start, bounds.end)
    return tables, summary


def _merge_items(items: pa.Table) -> pa.Table:
    """Per-item partial counts -> one row per item: train count, total events, first seen."""
    g = items.group_by(ITEM_ID, use_threads=False).aggregate([("count", "sum"), ("total", "sum"), ("first_seen", "min")])
    return pa.table({ITEM_ID: g.column(ITEM_ID), "count": g.column("count_sum"), "total": g.column("total_sum"),
                     "first_seen": g.column("first_seen_min")})


def write_shard(tables: dict[str, pa.Table], out_dir: str, shard: int, num_shards: int) -> None:
    for split, table in tables.items():
        write_parquet(table.sort_by(USER_ID), shard_path(out_dir, split, shard, num_shards))


def read_and_partition(unit: ReadUnit, unit_index: int, config: ExtractConfig, limits: RowLimits, out_dir: str
                       ) -> tuple[list[tuple[int, pa.Table]], ShardSummary]:
    """Read one unit, write its dead letters, return its events split by user shard and its counts."""
    result = read_unit(unit, limits, config.like_threshold)
    dead_path = None
    if result.dead.num_rows:
        dead_path = files.join(out_dir, DEAD_LETTER_DIR, f"part-{unit_index:05d}.jsonl")
        files.write_bytes(dead_path, _jsonl(result.dead.to_pylist()))
    summary = ShardSummary(input_rows=result.input_rows, derived_read=result.derived_events,
                           dead_letter=Counter(result.dead.column("reason").to_pylist()),
                           chunks=[(unit.path, unit.byte_start, result.owned_lines, dead_path)])
    return list(partition_by_shard(result.events, config.num_shards)), summary


def _jsonl(rows: list[dict]) -> bytes:
    return ("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n").encode("utf-8")


def renumber_dead_letters(chunks: list[tuple[str, int, int, str | None]]) -> None:
    """Later chunks of a text file number lines from 1; once every chunk's line count is known, shift
    their dead letters' line numbers to lines of the whole file (dead letters are few: cheap)."""
    by_file: dict[str, list[tuple[int, int, str | None]]] = {}
    for path, start, owned, dead_path in chunks:
        by_file.setdefault(path, []).append((start, owned, dead_path))
    for parts in by_file.values():
        before = 0
        for start, owned, dead_path in sorted(parts):
            if start > 0 and dead_path:
                rows = [json.loads(line) for line in files.read_bytes(dead_path).decode("utf-8").splitlines() if line]
                for row in rows:
                    row["line"] += before
                files.write_bytes(dead_path, _jsonl(rows))
            before += owned


# --- the final step ----------------------------------------------------------------------------------------
def vocabulary(items: pa.Table, bounds: Boundaries) -> pa.Table:
    """Items seen anywhere -> VOCAB_SCHEMA: train items by descending train count (ties by id) from
    NUM_RESERVED, everything else UNK_INDEX; cold_start = first seen inside the shadow window."""
    merged = _merge_items(items)
    order = pc.sort_indices(merged, [("count", "descending"), (ITEM_ID, "ascending")])
    merged = merged.take(order)
    counts = merged.column("count").to_numpy()
    in_train = counts > 0
    index = np.where(in_train, NUM_RESERVED + np.cumsum(in_train) - 1, UNK_INDEX).astype(np.int64)
    first_seen = merged.column("first_seen").to_numpy()
    return pa.table(
        {ITEM_ID: merged.column(ITEM_ID), "index": pa.array(index), "count": pa.array(counts.astype(np.int64)),
         "first_seen": pa.array(first_seen.astype(np.int64)), "cold_start": pa.array(first_seen >= bounds.shadow_start)},
        schema=VOCAB_SCHEMA,
    )


def finalize(summary: ShardSummary, bounds: Boundaries | None, spec: SourceSpec, config: ExtractConfig, out_dir: str) -> dict:
    """Merge all summaries; write vocabulary, titles, statistics, summary page and (last) the metrics."""
    used_rows = summary.output_events - summary.derived_events
    metrics: dict = {
        "source": spec.kind,
        "input_rows": summary.input_rows,
        "rows_used": used_rows,
        "output_events": summary.output_events,
        "derived_events": summary.derived_events,
        "dropped": dict(sorted(summary.dropped.items())),
        "dead_letter": dict(sorted(summary.dead_letter.items())),
        "users": {s: summary.users.get(s, 0) for s in (*SPLITS, "all")},
        "split_events": {s: summary.split_events.get(s, 0) for s in SPLITS},
        "num_shards": config.num_shards,
        "max_len": config.max_len,
    }
    renumber_dead_letters(summary.chunks)
    files.write_bytes(files.join(out_dir, DEAD_LETTER_DIR, "reasons.json"), json.dumps(metrics["dead_letter"], indent=1).encode())
    if bounds is None or summary.items is None or summary.output_events == 0:
        metrics.update(items=0, vocabulary_size=0, cold_start_items=0, titles=0)
        files.write_bytes(files.join(out_dir, EXTRACT_METRICS_FILE), json.dumps(metrics, indent=1).encode())
        return metrics
    empty = {s: pa.Table.from_pylist([], schema=SEQUENCE_SCHEMA) for s in SPLITS}
    for shard in sorted(set(range(config.num_shards)) - summary.shards):  # shards no user hashed into
        write_shard(empty, out_dir, shard, config.num_shards)
    vocab = vocabulary(summary.items, bounds)
    write_parquet(vocab, files.join(out_dir, VOCAB_FILE))
    titles = complete_titles(read_titles(spec.title_files, spec.tag_files), vocab.column(ITEM_ID).combine_chunks())
    write_parquet(titles, files.join(out_dir, TITLES_FILE))
    top = vocab.filter(pc.greater(vocab.column("count"), 0)).slice(0, config.top_items)
    title_of = dict(zip(titles.column(ITEM_ID).to_pylist(), titles.column("title").to_pylist()))
    top_rows = [(i, c, title_of.get(i)) for i, c in zip(top.column(ITEM_ID).to_pylist(), top.column("count").to_pylist())]
    metrics.update(
        items=vocab.num_rows,
        vocabulary_size=int((vocab.column("index").to_numpy() >= NUM_RESERVED).sum()),
        cold_start_items=int(pc.sum(vocab.column("cold_start")).as_py() or 0),
        titles=titles.num_rows,
        titles_without_metadata=int(pc.sum(pc.is_null(titles.column("title"))).as_py() or 0),
        start=bounds.start, validation_start=bounds.validation_start, shadow_start=bounds.shadow_start, end=bounds.end,
    )
    statistics = stats_mod.build_statistics(summary.event_stats, bounds.start, bounds.end, [(i, c) for i, c, _ in top_rows],
                                            vocab.num_rows, summary.lengths)
    files.write_bytes(files.join(out_dir, stats_mod.STATISTICS_FILE), statistics.SerializeToString())
    schema = stats_mod.events_schema(sorted(summary.event_stats.event_types))
    files.write_bytes(files.join(out_dir, stats_mod.SCHEMA_FILE), stats_mod.schema_text(schema).encode())
    files.write_bytes(files.join(out_dir, stats_mod.SUMMARY_FILE), stats_mod.summary_html(metrics, statistics, top_rows).encode())
    files.write_bytes(files.join(out_dir, EXTRACT_METRICS_FILE), json.dumps(metrics, indent=1).encode())
    return metrics


# --- running it ------------------------------------------------------------------------------------------
def _prepare(events_uri: str, out_dir: str, titles_uri: str | None, config: ExtractConfig) -> tuple[SourceSpec, list[ReadUnit]]:
    """Resolve the input and plan units on the driver; clear outputs of an earlier run."""
    files.use_anonymous_gcs_for_emulator()  # STORAGE_EMULATOR_HOST may have been set after import
    spec = resolve(events_uri, titles_uri)
    units = plan_units(list(spec.event_files), int(config.text_chunk_mb * (1 << 20)))
    log.info("extract: %d read units from %s (%s)", len(units), events_uri, spec.kind)
    for folder in (*SPLITS, DEAD_LETTER_DIR):
        files.delete_folder(files.join(out_dir, folder))
    return spec, units


def check_input(events_uri: str, titles_uri: str | None = None, config: ExtractConfig = ExtractConfig()) -> dict:
    """Fail fast, before any pipeline starts: resolve the layout and check every event file's columns
    (headers and Parquet footers only). Raises InputError naming the file and the problem."""
    files.use_anonymous_gcs_for_emulator()
    spec = resolve(events_uri, titles_uri)
    units = plan_units(list(spec.event_files), int(config.text_chunk_mb * (1 << 20)))
    return {"source": spec.kind, "event_files": len(spec.event_files), "read_units": len(units),
            "title_files": len(spec.title_files), "tag_files": len(spec.tag_files)}


def _bounds(low: int | None, high: int | None, config: ExtractConfig) -> Boundaries | None:
    return None if low is None else Boundaries.from_range(low, high, config)


def _check_result(metrics: dict, events_uri: str) -> dict:
    if metrics.get("output_events", 0) == 0:
        reasons = ", ".join(f"{k}={v}" for k, v in metrics.get("dead_letter", {}).items()) or "no rows"
        raise InputError(f"{events_uri}: no usable events ({metrics.get('input_rows', 0)} rows read; dead letters: {reasons})")
    return metrics


def extract_sequences_local(events_uri: str, out_dir: str, config: ExtractConfig = ExtractConfig(),
                            titles_uri: str | None = None) -> dict:
    """The same extraction in one process with pyarrow only (no Beam): the benchmark's reference."""
    spec, units = _prepare(events_uri, out_dir, titles_uri, config)
    limits = config.row_limits()
    total = ShardSummary()
    by_shard: dict[int, list[pa.Table]] = {}
    for index, unit in enumerate(units):
        parts, summary = read_and_partition(unit, index, config, limits, out_dir)
        total = total.merge(summary)
        for shard, table in parts:
            by_shard.setdefault(shard, []).append(table)
    lows = [pc.min(t.column(TIMESTAMP)).as_py() for ts in by_shard.values() for t in ts]
    highs = [pc.max(t.column(TIMESTAMP)).as_py() for ts in by_shard.values() for t in ts]
    bounds = _bounds(min(lows) if lows else None, max(highs) if highs else None, config)
    for shard, tables in sorted(by_shard.items()):
        split_tables, summary = build_shard(pa.concat_tables(tables), bounds, config)
        write_shard(split_tables, out_dir, shard, config.num_shards)
        summary.shards = {shard}
        total = total.merge(summary)
    return _check_result(finalize(total, bounds, spec, config, out_dir), events_uri)


class _ParseUnit:
    """Beam DoFn body: unit -> (shard, IPC bytes) events, plus its summary on the 'summary' output."""

    def __init__(self, config: ExtractConfig, limits: RowLimits, out_dir: str) -> None:
        self.config, self.limits, self.out_dir = config, limits, out_dir

    def __call__(self, indexed_unit: tuple[int, ReadUnit]):
        import apache_beam as beam

        index, unit = indexed_unit
        parts, summary = _reraise_as_text(read_and_partition, unit, index, self.config, self.limits, self.out_dir)
        for shard, table in parts:
            low, high = pc.min_max(table.column(TIMESTAMP)).values()
            yield beam.pvalue.TaggedOutput("range", (low.as_py(), high.as_py()))
            yield shard, to_ipc(table)
        yield beam.pvalue.TaggedOutput("summary", summary)


def _reraise_as_text(fn, *args):
    """Run fn; a GenrecError is re-raised with a marker the driver turns back into the same error."""
    try:
        return fn(*args)
    except GenrecError as exc:
        raise RuntimeError(f"[genrec:{type(exc).__name__}] {exc} [/genrec]") from None


def _combine_range(ranges: Iterable[tuple[int, int] | None]) -> tuple[int, int] | None:
    ranges = [r for r in ranges if r is not None]
    return (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else None


def _build_and_write(item: tuple[int, Iterable[bytes]], time_range, config: ExtractConfig, out_dir: str) -> ShardSummary:
    shard, blobs = item
    bounds = _bounds(*time_range, config) if time_range else None
    events = pa.concat_tables([from_ipc(b) for b in blobs])
    tables, summary = _reraise_as_text(build_shard, events, bounds, config)
    write_shard(tables, out_dir, shard, config.num_shards)
    summary.shards = {shard}
    return summary


def _finalize_all(summaries: list[ShardSummary], time_range, spec: SourceSpec, config: ExtractConfig, out_dir: str) -> dict:
    total = ShardSummary()
    for summary in summaries:
        total = total.merge(summary)
    bounds = _bounds(*time_range, config) if time_range else None
    return _reraise_as_text(finalize, total, bounds, spec, config, out_dir)


def _pipeline_options(beam_args: Sequence[str]):
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args = ["--runner=DirectRunner", *args]
    wants_workers = any(a.startswith("--direct_num_workers") for a in args)
    if wants_workers and not any(a.startswith("--direct_running_mode") for a in args):
        args.append("--direct_running_mode=multi_processing")  # in_memory mode ignores the worker count
    return PipelineOptions(args)


def _translate(exc: BaseException) -> GenrecError | None:
    """Find a worker-side GenrecError in a runner's exception text."""
    match = re.search(r"\[genrec:(\w+)\] (.*?) \[/genrec\]", str(exc), re.S)
    if not match:
        return None
    import genrec.errors as errors

    return getattr(errors, match.group(1), GenrecError)(match.group(2).splitlines()[0])


def extract_sequences(events_uri: str, out_dir: str, config: ExtractConfig = ExtractConfig(),
                      titles_uri: str | None = None, beam_args: Sequence[str] = ()) -> dict:
    """Runs the Beam pipeline; returns the metrics dict also written to out_dir/extract_metrics.json."""
    import apache_beam as beam

    spec, units = _prepare(events_uri, out_dir, titles_uri, config)
    limits = config.row_limits()
    try:
        with beam.Pipeline(options=_pipeline_options(beam_args)) as pipeline:
            parsed = (
                pipeline
                | "Units" >> beam.Create(list(enumerate(units)))
                | "Spread" >> beam.Reshuffle()
                | "Parse" >> beam.FlatMap(_ParseUnit(config, limits, out_dir)).with_outputs("range", "summary", main="events")
            )
            time_range = parsed.range | "TimeRange" >> beam.CombineGlobally(_combine_range)
            range_side = beam.pvalue.AsSingleton(time_range)
            shard_summaries = (
                parsed.events
                | "GroupByShard" >> beam.GroupByKey()
                | "BuildShards" >> beam.Map(_build_and_write, range_side, config, out_dir)
            )
            (
                (parsed.summary, shard_summaries)
                | "AllSummaries" >> beam.Flatten()
                | "Collect" >> beam.combiners.ToList()
                | "Finalize" >> beam.Map(_finalize_all, range_side, spec, config, out_dir)
            )
    except Exception as exc:  # noqa: BLE001 - runners wrap worker errors; recover ours as one line
        translated = _translate(exc)
        if translated is not None:
            raise translated from None
        raise
    metrics = json.loads(files.read_bytes(files.join(out_dir, EXTRACT_METRICS_FILE)))
    return _check_result(metrics, events_uri)


__all__ = ["Boundaries", "ExtractConfig", "build_shard", "check_input", "extract_sequences", "extract_sequences_local",
           "vocabulary"]
