"""Delimited text (CSV, TSV, MovieLens `::`) -> raw columns with line numbers, Arrow-parsed.

pyarrow's CSV reader does the parsing (fast, in C++); this module adds what a pipeline needs around
it: every row keeps its 1-based line number (blank lines are not rows), rows with too few or too many
fields become `truncated_line` / `extra_fields` dead letters instead of failing the file, and any row
can be turned back into its original text.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from genrec.errors import InputError
from genrec.sources.formats import EventFormat

_SUBSTITUTE_DELIMITER = "\x1f"  # ASCII unit separator: stands in for multi-character delimiters


class TextLines:
    """Line offsets of a byte buffer, computed once with numpy (no Python loop over lines)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        self.starts = np.concatenate([[0], newlines + 1]).astype(np.int64)
        self.ends = np.concatenate([newlines, [len(data)]]).astype(np.int64)
        if not data or data.endswith(b"\n"):  # the empty string after the final newline is no line
            self.starts, self.ends = self.starts[:-1], self.ends[:-1]
        lengths = self.ends - self.starts
        last = np.clip(self.ends - 1, 0, max(len(data) - 1, 0))
        carriage = np.frombuffer(data, dtype=np.uint8)[last] == 13 if len(data) else np.zeros(0, bool)
        self.blank = (lengths == 0) | ((lengths == 1) & carriage)

    def __len__(self) -> int:
        return len(self.starts)

    def text(self, line: int, encoding: str = "utf-8") -> str:
        """Line `line` (1-based) decoded, undecodable bytes shown as escapes."""
        raw = self.data[self.starts[line - 1]: self.ends[line - 1]].rstrip(b"\r")
        return raw.decode(encoding, errors="backslashreplace")


def header_columns(data: bytes, fmt: EventFormat, path: str) -> list[str]:
    """Column names of a text file (from its header, or the format's fixed names)."""
    if not fmt.header:
        return list(fmt.column_names)
    first = data.split(b"\n", 1)[0].rstrip(b"\r").decode(fmt.encoding, errors="replace")
    if not first.strip():
        raise InputError(f"{path}: empty file or empty header line")
    return [c.strip().strip('"') for c in first.split(fmt.delimiter)]


@dataclass
class TextRows:
    """A parsed text chunk: binary columns of its valid rows and where each row came from."""

    table: pa.Table  # valid rows, every column binary
    lines: np.ndarray  # [n] int64 line numbers (within the file for the first chunk, within the chunk after)
    positions: np.ndarray  # [n] int64 byte offset of each row's line in the file (the order key)
    bad: list[tuple[int, str, str]]  # (line, reason, raw text) of rows with the wrong number of fields
    text_lines: TextLines
    line_offset: int  # subtract from a TextLines line number to get the reported line number
    owned_lines: int  # lines this chunk owns (blank ones included), to number later chunks' lines


def read_text_rows(data: bytes, fmt: EventFormat, path: str, header_line: bytes = b"", base_offset: int = 0) -> TextRows:
    """Parse a text file's bytes, or a chunk of them (then `header_line` is the file's header, prepended,
    and `base_offset` the chunk's first byte in the file)."""
    buffer = header_line + data
    lines = TextLines(buffer)
    columns = header_columns(buffer, fmt, path)
    parse_bytes = buffer
    if fmt.encoding.lower() not in ("utf-8", "utf8"):
        parse_bytes = buffer.decode(fmt.encoding).encode("utf-8")
    delimiter = fmt.delimiter
    if len(delimiter) > 1:
        parse_bytes = parse_bytes.replace(delimiter.encode(), _SUBSTITUTE_DELIMITER.encode())
        delimiter = _SUBSTITUTE_DELIMITER
    invalid: list[tuple[int, str, str]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        reason = "truncated_line" if row.actual_columns < row.expected_columns else "extra_fields"
        invalid.append((int(row.number) if row.number is not None else -1, reason, row.text))
        return "skip"

    header_lines = 1 if fmt.header else 0
    if len(lines) <= header_lines or lines.blank[header_lines:].all():
        table = pa.table({c: pa.array([], pa.binary()) for c in columns})
    else:
        try:
            table = pcsv.read_csv(
                io.BytesIO(parse_bytes),
                read_options=pcsv.ReadOptions(
                    use_threads=False,  # single-threaded parsing reports line numbers; Beam parallelises chunks
                    column_names=None if fmt.header else list(fmt.column_names),
                    block_size=64 << 20,
                ),
                parse_options=pcsv.ParseOptions(
                    delimiter=delimiter, quote_char='"' if fmt.quoting else False, invalid_row_handler=on_invalid,
                    ignore_empty_lines=True,
                ),
                convert_options=pcsv.ConvertOptions(column_types={c: pa.binary() for c in columns}, check_utf8=False),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: cannot parse as delimited text ({str(exc).splitlines()[0]})") from None

    line_no = np.arange(1, len(lines) + 1, dtype=np.int64)
    nonblank = line_no[~lines.blank]
    # pyarrow numbers rows among non-blank lines (header included); map back to real line numbers.
    invalid = [(int(nonblank[n - 1]) if 0 < n <= len(nonblank) else n, reason, text) for n, reason, text in invalid]
    candidates = nonblank[nonblank > header_lines]
    bad_numbers = np.array([b[0] for b in invalid], dtype=np.int64)
    valid_lines = candidates[~np.isin(candidates, bad_numbers)]
    if len(valid_lines) != table.num_rows:  # e.g. quoted newlines: fall back to row ordinals
        valid_lines = np.arange(header_lines + 1, header_lines + 1 + table.num_rows, dtype=np.int64)
    line_offset = 1 if header_line else 0
    positions = base_offset - len(header_line) + lines.starts[np.clip(valid_lines - 1, 0, max(len(lines) - 1, 0))]
    bad = [(n - line_offset, reason, lines.text(n, fmt.encoding) if 0 < n <= len(lines) else text) for n, reason, text in invalid]
    return TextRows(table, valid_lines - line_offset, positions.astype(np.int64), bad, lines, line_offset,
                    len(lines) - line_offset)
