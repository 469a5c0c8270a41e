"""Work units (a text file, or one Parquet row group) and reading one into canonical events.

Units are what Beam distributes across workers: planning happens once on the driver (cheap: it reads
headers and Parquet footers only, and fails fast on a missing column), reading happens on the workers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genrec.errors import InputError
from genrec.sources import files
from genrec.sources.formats import FORMATS, EventFormat
from genrec.sources.jsonl import read_jsonl_rows
from genrec.sources.normalize import RawColumns, RowLimits, dead_letters, derive_likes, normalize
from genrec.sources.text import header_columns, read_text_rows

_HEADER_PROBE_BYTES = 64 << 10


@dataclass(frozen=True)
class ReadUnit:
    """One piece of input read by one worker call."""

    file_index: int  # position of the file in the sorted input list: part of every event's order key
    path: str
    format_name: str
    row_group: int = -1  # Parquet only
    row_offset: int = 0  # Parquet only: rows in earlier row groups of the same file
    byte_start: int = 0  # text/JSONL only: this chunk owns the lines starting in [byte_start, byte_end)
    byte_end: int = -1  # -1: to the end of the file

    @property
    def is_first_chunk(self) -> bool:
        return self.byte_start == 0

    @property
    def format(self) -> EventFormat:
        return FORMATS[self.format_name]


@dataclass
class UnitResult:
    """Events [EVENTS_WITH_ORDER], dead letters [DEAD_LETTER_SCHEMA] and how many rows were read."""

    events: pa.Table
    dead: pa.Table  # `line` is within the file for a first chunk, within the chunk for later ones
    input_rows: int
    derived_events: int
    owned_lines: int = 0  # lines of a text/JSONL chunk, to turn later chunks' line numbers into file lines


def _check_columns(path: str, present: list[str], fmt: EventFormat) -> None:
    missing = [c for c in fmt.required if c not in present]
    if missing:
        raise InputError(f"{path}: missing required column '{missing[0]}' (found: {', '.join(present) or 'none'})")


def _read_header(path: str) -> bytes:
    with files.open_seekable(path) as handle:
        return handle.read(_HEADER_PROBE_BYTES)


def _chunks(index: int, path: str, format_name: str, chunk_bytes: int) -> list[ReadUnit]:
    total = files.size(path)
    if chunk_bytes <= 0 or total <= chunk_bytes:
        return [ReadUnit(index, path, format_name)]
    cuts = list(range(0, total, chunk_bytes))
    return [ReadUnit(index, path, format_name, byte_start=a, byte_end=(b if b < total else -1))
            for a, b in zip(cuts, cuts[1:] + [total])]


def plan_units(event_files: list[tuple[str, str]], chunk_bytes: int = 64 << 20) -> list[ReadUnit]:
    """(path, format name) pairs -> units, after checking each file's columns (InputError if absent).

    Parquet files give one unit per row group; text and JSONL files one unit per `chunk_bytes`."""
    units: list[ReadUnit] = []
    for index, (path, format_name) in enumerate(event_files):
        fmt = FORMATS[format_name]
        if fmt.container == "parquet":
            try:
                with files.open_seekable(path) as handle:
                    meta = pq.ParquetFile(handle).metadata
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - a corrupt footer is a file-level problem
                raise InputError(f"{path}: cannot read Parquet metadata ({type(exc).__name__}: {exc})") from None
            _check_columns(path, meta.schema.to_arrow_schema().names, fmt)
            offset = 0
            for group in range(meta.num_row_groups):
                units.append(ReadUnit(index, path, format_name, group, offset))
                offset += meta.row_group(group).num_rows
        elif fmt.container == "text":
            _check_columns(path, header_columns(_read_header(path), fmt, path), fmt)
            units.extend(_chunks(index, path, format_name, chunk_bytes))
        else:
            units.extend(_chunks(index, path, format_name, chunk_bytes))  # JSONL: a missing key is a row problem
    return units


def _raw_from_table(table: pa.Table, fmt: EventFormat, lines: np.ndarray, raw_text, preset=None) -> RawColumns:
    def column(name: str | None):
        return table.column(name).combine_chunks() if name and name in table.column_names else None

    n = len(lines)
    empty = pa.nulls(n, pa.string())
    return RawColumns(
        user_id=column(fmt.user) if column(fmt.user) is not None else empty,
        item_id=column(fmt.item) if column(fmt.item) is not None else empty,
        timestamp=column(fmt.timestamp) if column(fmt.timestamp) is not None else empty,
        event_type=column(fmt.event_type),
        weight=column(fmt.weight),
        lines=lines,
        raw_text=raw_text,
        preset_reason=preset,
        weight_name=fmt.weight or "weight",
        weight_required=fmt.ratings,
    )


def read_unit(unit: ReadUnit, limits: RowLimits, like_threshold: float) -> UnitResult:
    """Read one unit into canonical events; bad rows become dead letters, never exceptions."""
    fmt = unit.format
    pre_dead: list[tuple[int, str, str]] = []
    owned_lines = 0
    if fmt.container == "parquet":
        try:
            with files.open_seekable(unit.path) as handle:
                parquet = pq.ParquetFile(handle)
                wanted = [c for c in (fmt.user, fmt.item, fmt.timestamp, fmt.event_type, fmt.weight)
                          if c and c in parquet.schema_arrow.names]
                table = parquet.read_row_group(unit.row_group, columns=wanted)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{unit.path}: cannot read row group {unit.row_group} ({type(exc).__name__}: {exc})") from None
        lines = np.arange(unit.row_offset, unit.row_offset + table.num_rows, dtype=np.int64)

        def parquet_row(i: int, table=table) -> str:
            return json.dumps(table.slice(i, 1).to_pylist()[0], default=str)

        raw = _raw_from_table(table, fmt, lines, parquet_row)
    elif fmt.container == "text":
        base, data = files.read_owned_lines(unit.path, unit.byte_start, unit.byte_end)
        header = files.first_line(unit.path) if fmt.header and not unit.is_first_chunk else b""
        rows = read_text_rows(data, fmt, unit.path, header, base)
        pre_dead, owned_lines = rows.bad, rows.owned_lines
        raw = _raw_from_table(rows.table, fmt, rows.lines,
                              lambda i: rows.text_lines.text(int(rows.lines[i]) + rows.line_offset, fmt.encoding))
        raw.positions = rows.positions
    else:
        base, data = files.read_owned_lines(unit.path, unit.byte_start, unit.byte_end)
        columns, lines, positions, preset, pre_dead, text_lines = read_jsonl_rows(data, fmt, base)
        owned_lines = len(text_lines)
        raw = _raw_from_table(pa.table(columns) if columns else pa.table({}), fmt, lines,
                              lambda i: text_lines.text(int(lines[i])), preset)
        raw.positions = positions
    events, dead = normalize(raw, file_index=unit.file_index, source=unit.path, limits=limits)
    if pre_dead:
        dead = pa.concat_tables([dead_letters(unit.path, pre_dead), dead]).sort_by("line")
    derived = 0
    if fmt.ratings:
        likes = derive_likes(events, like_threshold)
        derived = likes.num_rows
        events = pa.concat_tables([events, likes])
    return UnitResult(events=events, dead=dead, input_rows=len(raw.lines) + len(pre_dead), derived_events=derived,
                      owned_lines=owned_lines)
