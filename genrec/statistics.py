"""Data statistics for the KFP UI, computed with pyarrow (no TFDV).

Workers compute small mergeable partials per shard (`EventStats`, sequence-length counters); the final
step merges them and writes a tensorflow_metadata `Schema` (schema.pbtxt), a
`DatasetFeatureStatisticsList` (statistics.pb) and a readable `summary.html`.
"""
from __future__ import annotations

import html
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from genrec.events import EVENT_TYPE, ITEM_ID, TIMESTAMP, USER_ID, WEIGHT

SCHEMA_FILE = "schema.pbtxt"
STATISTICS_FILE = "statistics.pb"
SUMMARY_FILE = "summary.html"
HISTOGRAM_BINS = 10


@dataclass
class Moments:
    """Count, sum, sum of squares, min, max and zeros of a numeric column; merge by adding."""

    count: int = 0
    missing: int = 0
    total: float = 0.0
    squares: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    zeros: int = 0

    @classmethod
    def of(cls, values: np.ndarray, missing: int = 0) -> "Moments":
        values = values.astype(np.float64)
        if len(values) == 0:
            return cls(missing=missing)
        return cls(len(values), missing, float(values.sum()), float((values**2).sum()), float(values.min()),
                   float(values.max()), int((values == 0).sum()))

    def merge(self, other: "Moments") -> "Moments":
        return Moments(self.count + other.count, self.missing + other.missing, self.total + other.total,
                       self.squares + other.squares, min(self.low, other.low), max(self.high, other.high),
                       self.zeros + other.zeros)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(max(self.squares / self.count - self.mean**2, 0.0)) if self.count else 0.0


@dataclass
class EventStats:
    """Mergeable statistics of a set of events (one shard's, or all after merging)."""

    events: int = 0
    users: int = 0  # shards hold disjoint users, so per-shard distinct counts add up
    user_id_chars: int = 0
    item_id_chars: int = 0
    timestamp: Moments = field(default_factory=Moments)
    timestamp_histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    weight: Moments = field(default_factory=Moments)
    event_types: Counter = field(default_factory=Counter)

    @classmethod
    def of(cls, events: pa.Table, start: int, end: int) -> "EventStats":
        """Statistics of `events`; the timestamp histogram spans [start, end] in equal bins."""
        ts = events.column(TIMESTAMP).to_numpy()
        weights = events.column(WEIGHT)
        present = pc.drop_null(weights).to_numpy(zero_copy_only=False)
        edges = np.linspace(start, max(end, start + 1), HISTOGRAM_BINS + 1)
        hist, _ = np.histogram(ts, bins=edges)
        types = events.column(EVENT_TYPE).value_counts().to_pylist()
        return cls(
            events=events.num_rows,
            users=len(pc.unique(events.column(USER_ID))),
            user_id_chars=int(pc.sum(pc.utf8_length(events.column(USER_ID))).as_py() or 0),
            item_id_chars=int(pc.sum(pc.utf8_length(events.column(ITEM_ID))).as_py() or 0),
            timestamp=Moments.of(ts),
            timestamp_histogram=[int(h) for h in hist],
            weight=Moments.of(present, missing=events.num_rows - len(present)),
            event_types=Counter({t["values"]: int(t["counts"]) for t in types}),
        )

    def merge(self, other: "EventStats") -> "EventStats":
        return EventStats(
            self.events + other.events, self.users + other.users, self.user_id_chars + other.user_id_chars,
            self.item_id_chars + other.item_id_chars, self.timestamp.merge(other.timestamp),
            [a + b for a, b in zip(self.timestamp_histogram, other.timestamp_histogram)],
            self.weight.merge(other.weight), self.event_types + other.event_types,
        )


def length_counts(lengths: np.ndarray) -> Counter:
    """Sequence lengths [U] int -> Counter(length -> users), the mergeable form of a length histogram."""
    values, counts = np.unique(lengths, return_counts=True)
    return Counter({int(v): int(c) for v, c in zip(values, counts)})


# --- tensorflow_metadata outputs ---------------------------------------------------------------------
def events_schema(event_types: list[str]) -> schema_pb2.Schema:
    """Schema of canonical events: types, presence, and the observed event-type domain."""
    schema = schema_pb2.Schema()
    for name, kind, required in ((USER_ID, schema_pb2.BYTES, True), (ITEM_ID, schema_pb2.BYTES, True),
                                 (TIMESTAMP, schema_pb2.INT, True), (EVENT_TYPE, schema_pb2.BYTES, True),
                                 (WEIGHT, schema_pb2.FLOAT, False)):
        feature = schema.feature.add(name=name, type=kind)
        feature.presence.min_fraction = 1.0 if required else 0.0
        feature.shape.dim.add(size=1) if required else None
        if name == EVENT_TYPE:
            feature.domain = EVENT_TYPE
    schema.string_domain.add(name=EVENT_TYPE, value=sorted(event_types))
    return schema


def _numeric(feature, moments: Moments, histogram: list[int] | None = None, edges: np.ndarray | None = None) -> None:
    stats = feature.num_stats
    stats.common_stats.num_non_missing = moments.count
    stats.common_stats.num_missing = moments.missing
    stats.common_stats.min_num_values = stats.common_stats.max_num_values = 1
    stats.common_stats.avg_num_values = 1.0
    stats.mean, stats.std_dev, stats.num_zeros = moments.mean, moments.std, moments.zeros
    if moments.count:
        stats.min, stats.max = moments.low, moments.high
    if histogram is not None and edges is not None:
        hist = stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
        for i, count in enumerate(histogram):
            hist.buckets.add(low_value=float(edges[i]), high_value=float(edges[i + 1]), sample_count=float(count))


def _strings(feature, count: int, unique: int, chars: int, top: list[tuple[str, int]]) -> None:
    stats = feature.string_stats
    stats.common_stats.num_non_missing = count
    stats.common_stats.min_num_values = stats.common_stats.max_num_values = 1
    stats.common_stats.avg_num_values = 1.0
    stats.unique = unique
    stats.avg_length = chars / count if count else 0.0
    for value, frequency in top:
        stats.top_values.add(value=value, frequency=float(frequency))
        stats.rank_histogram.buckets.add(label=value, sample_count=float(frequency))


def build_statistics(stats: EventStats, start: int, end: int, top_items: list[tuple[str, int]], n_items: int,
                     split_lengths: dict[str, Counter]) -> statistics_pb2.DatasetFeatureStatisticsList:
    """One dataset for the events, and one per split with its per-user sequence length."""
    out = statistics_pb2.DatasetFeatureStatisticsList()
    events = out.datasets.add(name="events", num_examples=stats.events)
    edges = np.linspace(start, max(end, start + 1), HISTOGRAM_BINS + 1)
    _strings(events.features.add(name=USER_ID, type=statistics_pb2.FeatureNameStatistics.STRING),
             stats.events, stats.users, stats.user_id_chars, [])
    _strings(events.features.add(name=ITEM_ID, type=statistics_pb2.FeatureNameStatistics.STRING),
             stats.events, n_items, stats.item_id_chars, top_items)
    _numeric(events.features.add(name=TIMESTAMP, type=statistics_pb2.FeatureNameStatistics.INT),
             stats.timestamp, stats.timestamp_histogram, edges)
    _strings(events.features.add(name=EVENT_TYPE, type=statistics_pb2.FeatureNameStatistics.STRING),
             stats.events, len(stats.event_types), sum(len(k) * v for k, v in stats.event_types.items()),
             stats.event_types.most_common())
    _numeric(events.features.add(name=WEIGHT, type=statistics_pb2.FeatureNameStatistics.FLOAT), stats.weight)
    for split, lengths in split_lengths.items():
        values = np.repeat(np.array(list(lengths.keys()), dtype=np.float64), list(lengths.values()))
        dataset = out.datasets.add(name=split, num_examples=int(len(values)))
        _numeric(dataset.features.add(name="sequence_length", type=statistics_pb2.FeatureNameStatistics.INT),
                 Moments.of(values), *_length_histogram(values))
    return out


def _length_histogram(values: np.ndarray) -> tuple[list[int], np.ndarray]:
    if len(values) == 0:
        return [0] * HISTOGRAM_BINS, np.linspace(0, 1, HISTOGRAM_BINS + 1)
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    return [int(c) for c in counts], edges


def schema_text(schema: schema_pb2.Schema) -> str:
    """The schema as protobuf text format (what TFX writes to schema.pbtxt)."""
    return text_format.MessageToString(schema)


# --- summary.html --------------------------------------------------------------------------------------
def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _utc(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def summary_html(metrics: dict, statistics: statistics_pb2.DatasetFeatureStatisticsList,
                 top_items: list[tuple[str, int, str | None]]) -> str:
    """A self-contained HTML page: counts, split boundaries, dead-letter reasons, top items, features."""
    counts = [[k, metrics[k]] for k in ("input_rows", "rows_used", "output_events", "derived_events", "items",
                                        "vocabulary_size", "cold_start_items", "titles") if k in metrics]
    counts += [[f"users ({split})", n] for split, n in metrics.get("users", {}).items()]
    bounds = [[name, metrics.get(name), _utc(metrics.get(name))] for name in ("start", "validation_start", "shadow_start", "end")]
    dropped = [[f"dropped: {k}", v] for k, v in sorted(metrics.get("dropped", {}).items())]
    dead = [[k, v] for k, v in sorted(metrics.get("dead_letter", {}).items(), key=lambda kv: -kv[1])]
    features = []
    for dataset in statistics.datasets:
        for f in dataset.features:
            if f.HasField("num_stats"):
                s = f.num_stats
                features.append([dataset.name, f.name, s.common_stats.num_non_missing, s.common_stats.num_missing,
                                 f"{s.mean:.4g}", f"{s.std_dev:.4g}", f"{s.min:.6g}", f"{s.max:.6g}", ""])
            else:
                s = f.string_stats
                top = ", ".join(f"{v.value} ({int(v.frequency)})" for v in s.top_values[:5])
                features.append([dataset.name, f.name, s.common_stats.num_non_missing, s.common_stats.num_missing,
                                 "", "", "", f"unique {s.unique}", top])
    style = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Extraction summary</title><style>{style}</style></head><body>"
        f"<h1>Sequence extraction</h1><p>Source: {html.escape(str(metrics.get('source', '')))}</p>"
        f"<h2>Counts</h2>{_table(['quantity', 'value'], counts + dropped)}"
        f"<h2>Split boundaries</h2>{_table(['boundary', 'epoch seconds', 'UTC'], bounds)}"
        f"<h2>Dead-letter reasons</h2>{_table(['reason', 'rows'], dead) if dead else '<p>No dead-letter rows.</p>'}"
        f"<h2>Top items (train window)</h2>{_table(['item_id', 'train events', 'title'], [list(r) for r in top_items])}"
        f"<h2>Feature statistics</h2>{_table(['dataset', 'feature', 'present', 'missing', 'mean', 'std', 'min', 'max', 'top values'], features)}"
        "</body></html>"
    )
