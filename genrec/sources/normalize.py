"""Raw columns -> canonical events plus one dead-letter reason per unusable row (vectorised).

Every reader (delimited text, JSONL, Parquet) hands over columns of whatever type its file had, the
row's line number and a way to recover the row's raw text; this module alone decides which rows are
usable and why the others are not, so every format gets the same rules and the same reason names.
Reasons are checked in a fixed order and the first one found is recorded.
"""
from __future__ import annotations

import datetime as dt

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genrec.events import DEFAULT_EVENT_TYPE, EVENT_TYPE, ITEM_ID, TIMESTAMP, USER_ID, WEIGHT

# int64 stable tie-breaker: (file index << 41) | (row position << 1) | derived, where a row's position is
# its line's byte offset (text, JSONL: known without counting lines, so files can be read in chunks)
# or its row index (Parquet).
ORDER = "_order"
DERIVED_BIT = 1
ROW_SHIFT = 1
FILE_SHIFT = 41

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("line", pa.int64()),  # 1-based line for text files, row index for Parquet
        pa.field("reason", pa.string()),
        pa.field("raw", pa.string()),
    ]
)
EVENTS_WITH_ORDER = pa.schema(
    [
        pa.field(USER_ID, pa.string()),
        pa.field(ITEM_ID, pa.string()),
        pa.field(TIMESTAMP, pa.int64()),
        pa.field(EVENT_TYPE, pa.string()),
        pa.field(WEIGHT, pa.float32()),
        pa.field(ORDER, pa.int64()),
    ]
)
_INT_RE = r"^[+-]?[0-9]{1,18}$"
_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_NAN_RE = r"(?i)^[+-]?(nan|inf|infinity)$"


@dataclass(frozen=True)
class RowLimits:
    """Timestamps outside [0, max_timestamp] are dead-lettered (epoch seconds)."""

    max_timestamp: int


@dataclass
class RawColumns:
    """What a reader hands over: one array per canonical column (None when the file lacks it).

    `preset_reason` (object array, None = fine) lets a reader flag rows it already knows are bad
    (e.g. a JSON value of the wrong type); `lines` are the rows' line numbers; `raw_text(i)`
    returns row i's original text for the dead-letter output.
    """

    user_id: pa.Array
    item_id: pa.Array
    timestamp: pa.Array
    event_type: pa.Array | None
    weight: pa.Array | None
    lines: np.ndarray
    raw_text: Callable[[int], str]
    preset_reason: np.ndarray | None = None
    weight_name: str = WEIGHT  # the source column's name, used in reason strings (e.g. "rating")
    weight_required: bool = False
    positions: np.ndarray | None = None  # [n] int64 order positions; None: use `lines`


class _Reasons:
    """First-reason-wins bookkeeping over n rows."""

    def __init__(self, n: int, preset: np.ndarray | None) -> None:
        self.reason = np.full(n, None, dtype=object) if preset is None else preset.astype(object).copy()

    def flag(self, mask: np.ndarray, reason: str) -> None:
        take = np.asarray(mask, dtype=bool) & np.equal(self.reason, None)
        self.reason[take] = reason

    @property
    def ok(self) -> np.ndarray:
        return np.equal(self.reason, None)


def _mask(arr: pa.Array) -> np.ndarray:
    """Boolean Arrow array (nulls -> False) as numpy."""
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _to_utf8(arr: pa.Array, name: str, reasons: _Reasons) -> pa.Array:
    """Binary -> string; rows with invalid UTF-8 become `bad_encoding` (and null)."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr.cast(pa.string())
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        return arr
    try:
        return arr.cast(pa.string())
    except (pa.ArrowInvalid, UnicodeDecodeError):
        values, bad = [], np.zeros(len(arr), dtype=bool)
        for i, raw in enumerate(arr.to_pylist()):
            try:
                values.append(None if raw is None else raw.decode("utf-8"))
            except UnicodeDecodeError:
                values.append(None)
                bad[i] = True
        reasons.flag(bad, "bad_encoding")
        return pa.array(values, pa.string())


def _id_column(arr: pa.Array, name: str, reasons: _Reasons) -> pa.Array:
    """User or item ids as trimmed strings; integers are accepted and formatted."""
    arr = _to_utf8(arr, name, reasons)
    if pa.types.is_integer(arr.type):
        arr = arr.cast(pa.string())
    elif not pa.types.is_string(arr.type):
        reasons.flag(_mask(pc.is_valid(arr)), f"wrong_type:{name}")
        return pa.nulls(len(arr), pa.string())
    arr = pc.utf8_trim_whitespace(arr)
    reasons.flag(~_mask(pc.is_valid(arr)) | _mask(pc.equal(arr, "")), f"missing_field:{name}")
    return arr


def _parse_iso(values: list[str]) -> dict[str, int | None]:
    """ISO-8601 strings -> epoch seconds (naive times are UTC); unparseable -> None."""
    out: dict[str, int | None] = {}
    for text in values:
        try:
            stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            out[text] = None
            continue
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.timezone.utc)
        out[text] = int(stamp.timestamp() // 1)
    return out


_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _epoch_seconds(arr: pa.Array) -> pa.Array:
    """Arrow timestamp/date column -> int64 epoch seconds (floored; sub-second parts dropped)."""
    if pa.types.is_date32(arr.type):
        return pc.multiply(arr.cast(pa.int32()).cast(pa.int64()), 86_400)
    if pa.types.is_date64(arr.type):
        ticks, per_second = arr.cast(pa.int64()), 1_000
    else:
        ticks, per_second = arr.cast(pa.int64()), _PER_SECOND[arr.type.unit]
    values = ticks.to_numpy(zero_copy_only=False)
    floored = np.floor_divide(np.nan_to_num(values.astype(np.float64)).astype(np.int64) if values.dtype.kind == "f"
                              else values, per_second)
    return pa.array(floored, pa.int64(), mask=~_mask(pc.is_valid(ticks)))


def _timestamp_column(arr: pa.Array, reasons: _Reasons, limits: RowLimits) -> np.ndarray:
    """Any supported timestamp column -> int64 epoch seconds (0 where the row is already bad)."""
    n = len(arr)
    seconds = np.zeros(n, dtype=np.int64)
    arr = _to_utf8(arr, TIMESTAMP, reasons)
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        arr = _epoch_seconds(arr)
    if pa.types.is_integer(arr.type):
        valid = _mask(pc.is_valid(arr))
        reasons.flag(~valid, f"missing_field:{TIMESTAMP}")
        seconds = pc.fill_null(arr, 0).cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
    elif pa.types.is_floating(arr.type):
        valid = _mask(pc.is_valid(arr))
        reasons.flag(~valid, f"missing_field:{TIMESTAMP}")
        floats = pc.fill_null(arr, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        reasons.flag(~np.isfinite(floats), "nan_or_inf")
        seconds = np.where(np.isfinite(floats) & (np.abs(floats) < 9e18), np.floor(np.nan_to_num(floats)), 0).astype(np.int64)
    elif pa.types.is_string(arr.type):
        arr = pc.utf8_trim_whitespace(arr)
        reasons.flag(~_mask(pc.is_valid(arr)) | _mask(pc.equal(arr, "")), f"missing_field:{TIMESTAMP}")
        is_int = _mask(pc.match_substring_regex(arr, _INT_RE))
        is_float = ~is_int & _mask(pc.match_substring_regex(arr, _FLOAT_RE))
        is_nan = _mask(pc.match_substring_regex(arr, _NAN_RE))
        reasons.flag(is_nan, "nan_or_inf")
        if is_int.any():
            seconds[is_int] = pc.filter(arr, pa.array(is_int)).cast(pa.int64()).to_numpy()
        if is_float.any():
            floats = pc.filter(arr, pa.array(is_float)).cast(pa.float64()).to_numpy()
            finite = np.isfinite(floats) & (np.abs(floats) < 9e18)
            idx = np.flatnonzero(is_float)
            reasons.flag(np.isin(np.arange(n), idx[~finite]), "nan_or_inf")
            seconds[idx[finite]] = np.floor(floats[finite]).astype(np.int64)
        rest = reasons.ok & ~is_int & ~is_float & ~is_nan
        if rest.any():
            texts = pc.filter(arr, pa.array(rest)).to_pylist()
            parsed = _parse_iso(sorted(set(texts)))
            idx = np.flatnonzero(rest)
            values = np.array([parsed[t] if parsed[t] is not None else -(2**62) for t in texts], dtype=np.int64)
            bad = values == -(2**62)
            reasons.flag(np.isin(np.arange(n), idx[bad]), "bad_timestamp")
            seconds[idx[~bad]] = values[~bad]
    else:
        reasons.flag(_mask(pc.is_valid(arr)), f"wrong_type:{TIMESTAMP}")
        reasons.flag(~_mask(pc.is_valid(arr)), f"missing_field:{TIMESTAMP}")
    reasons.flag(seconds < 0, "negative_timestamp")
    reasons.flag(seconds > limits.max_timestamp, "far_future_timestamp")
    return seconds


def _event_type_column(arr: pa.Array | None, n: int, reasons: _Reasons) -> pa.Array:
    """Event types as strings; absent or empty -> the default type."""
    if arr is None:
        return pa.array(np.full(n, DEFAULT_EVENT_TYPE, dtype=object), pa.string())
    arr = _to_utf8(arr, EVENT_TYPE, reasons)
    if not pa.types.is_string(arr.type):
        reasons.flag(_mask(pc.is_valid(arr)), f"wrong_type:{EVENT_TYPE}")
        return pa.array(np.full(n, DEFAULT_EVENT_TYPE, dtype=object), pa.string())
    arr = pc.utf8_trim_whitespace(arr)
    empty = ~_mask(pc.is_valid(arr)) | _mask(pc.equal(arr, ""))
    return pc.if_else(pa.array(empty), DEFAULT_EVENT_TYPE, arr)


def _weight_column(raw: RawColumns, n: int, reasons: _Reasons) -> np.ndarray:
    """Weights as float32 with NaN for 'no weight'; unparseable values -> wrong_type:<name>."""
    arr, name = raw.weight, raw.weight_name
    if arr is None:
        return np.full(n, np.nan, dtype=np.float32)
    arr = _to_utf8(arr, name, reasons)
    if pa.types.is_string(arr.type):
        arr = pc.utf8_trim_whitespace(arr)
        empty = ~_mask(pc.is_valid(arr)) | _mask(pc.equal(arr, ""))
        numeric = _mask(pc.match_substring_regex(arr, _FLOAT_RE))
        reasons.flag(~empty & ~numeric & ~_mask(pc.match_substring_regex(arr, _NAN_RE)), f"wrong_type:{name}")
        values = np.full(n, np.nan, dtype=np.float64)
        parseable = numeric | _mask(pc.match_substring_regex(arr, _NAN_RE))
        if parseable.any():
            values[parseable] = pc.filter(arr, pa.array(parseable)).cast(pa.float64()).to_numpy()
    elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        empty = ~_mask(pc.is_valid(arr))
        values = pc.fill_null(arr.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    else:
        empty = ~_mask(pc.is_valid(arr))
        reasons.flag(~empty, f"wrong_type:{name}")
        values = np.full(n, np.nan)
    if raw.weight_required:
        reasons.flag(empty, f"missing_field:{name}")
    reasons.flag(~empty & ~np.isfinite(values), "nan_or_inf")
    return values.astype(np.float32)


def normalize(raw: RawColumns, *, file_index: int, source: str, limits: RowLimits) -> tuple[pa.Table, pa.Table]:
    """Raw columns -> (events with `_order` [EVENTS_WITH_ORDER], dead letters [DEAD_LETTER_SCHEMA])."""
    n = len(raw.lines)
    reasons = _Reasons(n, raw.preset_reason)
    users = _id_column(raw.user_id, USER_ID, reasons)
    items = _id_column(raw.item_id, ITEM_ID, reasons)
    seconds = _timestamp_column(raw.timestamp, reasons, limits)
    types = _event_type_column(raw.event_type, n, reasons)
    weights = _weight_column(raw, n, reasons)
    ok = reasons.ok
    keep = pa.array(ok)
    positions = raw.lines if raw.positions is None else raw.positions
    order = (np.int64(file_index) << FILE_SHIFT) | (positions.astype(np.int64) << ROW_SHIFT)
    events = pa.table(
        {
            USER_ID: pc.filter(users, keep),
            ITEM_ID: pc.filter(items, keep),
            TIMESTAMP: pa.array(seconds[ok], pa.int64()),
            EVENT_TYPE: pc.filter(types, keep),
            WEIGHT: pa.array(weights[ok], pa.float32(), mask=np.isnan(weights[ok])),
            ORDER: pa.array(order[ok], pa.int64()),
        },
        schema=EVENTS_WITH_ORDER,
    )
    bad = np.flatnonzero(~ok)
    dead = pa.table(
        {
            "source": pa.array([source] * len(bad), pa.string()),
            "line": pa.array(raw.lines[bad].astype(np.int64), pa.int64()),
            "reason": pa.array(reasons.reason[bad].tolist(), pa.string()),
            "raw": pa.array([raw.raw_text(int(i)) for i in bad], pa.string()),
        },
        schema=DEAD_LETTER_SCHEMA,
    )
    return events, dead


def dead_letters(source: str, rows: list[tuple[int, str, str]]) -> pa.Table:
    """Dead letters a reader found before normalisation: (line, reason, raw text) triples."""
    return pa.table(
        {
            "source": pa.array([source] * len(rows), pa.string()),
            "line": pa.array([r[0] for r in rows], pa.int64()),
            "reason": pa.array([r[1] for r in rows], pa.string()),
            "raw": pa.array([r[2] for r in rows], pa.string()),
        },
        schema=DEAD_LETTER_SCHEMA,
    )


def derive_likes(events: pa.Table, threshold: float, like_type: str = "like") -> pa.Table:
    """Ratings >= threshold also yield a `like` event at the same timestamp (order bit 0 set)."""
    weights = events.column(WEIGHT)
    mask = pc.fill_null(pc.greater_equal(weights, pa.scalar(threshold, pa.float32())), False)
    likes = events.filter(mask)
    return likes.set_column(
        likes.schema.get_field_index(EVENT_TYPE), EVENT_TYPE, pa.array(np.full(likes.num_rows, like_type, dtype=object), pa.string())
    ).set_column(likes.schema.get_field_index(ORDER), ORDER, pc.bit_wise_or(likes.column(ORDER), pa.scalar(DERIVED_BIT, pa.int64())))


def is_derived(order: pa.Array) -> np.ndarray:
    """True for events created by `derive_likes` rather than read from a row."""
    return (np.asarray(order.to_numpy(zero_copy_only=False)) & DERIVED_BIT).astype(bool)



