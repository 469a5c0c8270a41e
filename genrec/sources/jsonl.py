"""JSON Lines -> raw columns, one `json.loads` per line so one bad line never loses its neighbours."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from genrec.sources.formats import EventFormat
from genrec.sources.text import TextLines


def _cell(value: object) -> tuple[str | None, bool]:
    """A JSON value as text for the normaliser, and whether its type is acceptable."""
    if value is None:
        return None, True
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        return None, False
    if isinstance(value, float):
        return repr(value), True
    return str(value), True


def read_jsonl_rows(
    data: bytes, fmt: EventFormat, base_offset: int = 0,
) -> tuple[dict[str, pa.Array], np.ndarray, np.ndarray, np.ndarray, list[tuple[int, str, str]], TextLines]:
    """Parse JSONL bytes (a file, or a chunk of whole lines starting at byte `base_offset`).

    Returns (string column per source column of `fmt`, line numbers [n] int64, byte positions [n] int64,
    preset reasons [n] object, bad lines as (line, reason, text), the chunk's TextLines).
    """
    lines = TextLines(data)
    wanted = [c for c in (fmt.user, fmt.item, fmt.timestamp, fmt.event_type, fmt.weight) if c]
    values: dict[str, list[str | None]] = {c: [] for c in wanted}
    line_numbers: list[int] = []
    preset: list[str | None] = []
    bad: list[tuple[int, str, str]] = []
    # Chunks always end at a newline unless they reach the end of the file: so an unterminated last
    # line is the file's last line, cut short.
    last_line_unterminated = len(data) > 0 and not data.endswith(b"\n")
    for index in np.flatnonzero(~lines.blank):
        number = int(index) + 1
        raw = data[lines.starts[index]: lines.ends[index]]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append((number, "bad_encoding", lines.text(number)))
            continue
        try:
            record = json.loads(text)
        except ValueError:
            truncated = last_line_unterminated and number == len(lines)
            bad.append((number, "truncated_line" if truncated else "bad_json", text.rstrip("\r")))
            continue
        if not isinstance(record, dict):
            bad.append((number, "wrong_type:row", text.rstrip("\r")))
            continue
        reason = None
        for column in wanted:
            cell, ok = _cell(record.get(column))
            values[column].append(cell)
            if not ok and reason is None:
                reason = f"wrong_type:{column}"
        line_numbers.append(number)
        preset.append(reason)
    arrays = {c: pa.array(v, pa.string()) for c, v in values.items()}
    numbers = np.array(line_numbers, dtype=np.int64)
    positions = base_offset + lines.starts[numbers - 1] if len(numbers) else np.zeros(0, np.int64)
    return arrays, numbers, positions.astype(np.int64), np.array(preset, dtype=object), bad, lines
