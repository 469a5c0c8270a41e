"""Title metadata from any supported layout -> TITLE_SCHEMA (one row per item_id).

MovieLens tags (tags.csv) are aggregated per movie, most frequent first; when no launch date is
given, the year in a title like "Heat (1995)" becomes January 1st of that year.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections import Counter, defaultdict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from genrec.errors import InputError
from genrec.events import ITEM_ID, TITLE_SCHEMA
from genrec.sources import files
from genrec.sources.formats import ML100K_GENRES, NO_GENRES

_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_LIST_SEPARATOR = "|"


def year_launch(title: str | None) -> int | None:
    """Epoch seconds of Jan 1st of the year in parentheses at the end of a title, or None."""
    match = _YEAR.search(title or "")
    if not match:
        return None
    return int(dt.datetime(int(match.group(1)), 1, 1, tzinfo=dt.timezone.utc).timestamp())


def _date_launch(text: str | None) -> int | None:
    """'01-Jan-1995' (MovieLens 100K) or ISO-8601 -> epoch seconds, else None."""
    if not text:
        return None
    for parse in (lambda s: dt.datetime.strptime(s, "%d-%b-%Y"), dt.datetime.fromisoformat):
        try:
            stamp = parse(text.strip())
        except ValueError:
            continue
        return int(stamp.replace(tzinfo=stamp.tzinfo or dt.timezone.utc).timestamp())
    return None


def _split_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    text = str(value).strip()
    if text in ("", NO_GENRES):
        return []
    if text.startswith("["):
        try:
            return _split_list(json.loads(text))
        except ValueError:
            pass
    return [part.strip() for part in text.split(_LIST_SEPARATOR) if part.strip()]


def _launch(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if value == value else None
    if isinstance(value, dt.datetime):
        return int(value.replace(tzinfo=value.tzinfo or dt.timezone.utc).timestamp())
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else _date_launch(text)


def _rows_to_table(rows: list[dict]) -> pa.Table:
    """Normalised dict rows -> TITLE_SCHEMA table, first occurrence of an item_id wins."""
    seen, unique = set(), []
    for row in rows:
        if row[ITEM_ID] and row[ITEM_ID] not in seen:
            seen.add(row[ITEM_ID])
            unique.append(row)
    return pa.Table.from_pylist(unique, schema=TITLE_SCHEMA)


def _normalise(record: dict) -> dict:
    title = record.get("title")
    title = None if title is None else str(title).strip() or None
    launch = _launch(record.get("launch_date"))
    return {
        ITEM_ID: None if record.get(ITEM_ID) is None else str(record[ITEM_ID]).strip(),
        "title": title,
        "genres": _split_list(record.get("genres")),
        "tags": _split_list(record.get("tags")),
        "description": record.get("description") or None,
        "launch_date": launch if launch is not None else year_launch(title),
    }


def _read_delimited(data: bytes, path: str, delimiter: str, names: list[str] | None, encoding: str, quoting: bool) -> pa.Table:
    if encoding != "utf-8":
        data = data.decode(encoding).encode("utf-8")
    if len(delimiter) > 1:
        data, delimiter = data.replace(delimiter.encode(), b"\x1f"), "\x1f"
    try:
        return pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(column_names=names),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoting else False,
                                            invalid_row_handler=lambda row: "skip"),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names} if names else None,
                                                strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot parse title metadata ({str(exc).splitlines()[0]})") from None


def _records(path: str) -> list[dict]:
    """One title file (any supported layout) -> raw records with canonical keys."""
    name = files.basename(path).lower()
    data = files.read_bytes(path)
    if name == "u.item":
        names = ["id", "title", "release", "video", "url"] + [f"g{i}" for i in range(len(ML100K_GENRES))]
        table = _read_delimited(data, path, "|", names, "latin-1", False)
        out = []
        for row in table.to_pylist():
            genres = [g for i, g in enumerate(ML100K_GENRES) if row.get(f"g{i}") == "1" and g != "unknown"]
            out.append({ITEM_ID: row["id"], "title": row["title"], "genres": genres,
                        "launch_date": _date_launch(row["release"]) or year_launch(row["title"])})
        return out
    if name == "movies.dat":
        table = _read_delimited(data, path, "::", ["movieId", "title", "genres"], "latin-1", False)
        return [{ITEM_ID: r["movieId"], "title": r["title"], "genres": r["genres"]} for r in table.to_pylist()]
    if name == "movies.csv":
        table = _read_delimited(data, path, ",", None, "utf-8", True)
        return [{ITEM_ID: r["movieId"], "title": r["title"], "genres": r["genres"]} for r in table.to_pylist()]
    if name.endswith((".parquet", ".pq")):
        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{path}: cannot read Parquet ({type(exc).__name__}: {exc})") from None
    elif name.endswith((".jsonl", ".json", ".ndjson")):
        records = []
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line) if line.strip() else None
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        table = pa.Table.from_pylist([{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()}
                                      for r in records]) if records else pa.table({})
    else:
        table = _read_delimited(data, path, ",", None, "utf-8", True)
    if ITEM_ID not in table.column_names:
        raise InputError(f"{path}: missing required column '{ITEM_ID}' (found: {', '.join(table.column_names) or 'none'})")
    if "title" not in table.column_names:
        raise InputError(f"{path}: missing required column 'title' (found: {', '.join(table.column_names)})")
    return table.to_pylist()


def _tags(paths: tuple[str, ...]) -> dict[str, list[str]]:
    """MovieLens tags.csv -> item_id -> distinct tags, most used first (case-insensitive merge)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    spelling: dict[tuple[str, str], str] = {}
    for path in paths:
        table = _read_delimited(files.read_bytes(path), path, ",", None, "utf-8", True)
        if "movieId" not in table.column_names or "tag" not in table.column_names:
            raise InputError(f"{path}: tags file needs columns movieId and tag")
        items = table.column("movieId").cast(pa.string()).to_pylist()
        for item, tag in zip(items, table.column("tag").to_pylist()):
            if item and tag and tag.strip():
                key = tag.strip().lower()
                counts[item][key] += 1
                spelling.setdefault((item, key), tag.strip())
    return {item: [spelling[(item, k)] for k, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]
            for item, c in counts.items()}


def read_titles(title_files: tuple[str, ...], tag_files: tuple[str, ...] = ()) -> pa.Table:
    """All title metadata as one TITLE_SCHEMA table (empty when there is none)."""
    rows = [_normalise(r) for path in title_files for r in _records(path)]
    tags = _tags(tag_files) if tag_files else {}
    for row in rows:
        extra = tags.get(row[ITEM_ID], [])
        if extra:
            row["tags"] = list(dict.fromkeys(row["tags"] + extra))
    return _rows_to_table(rows)


def complete_titles(titles: pa.Table, item_ids: pa.Array | list[str]) -> pa.Table:
    """Add a row with null metadata for every item with events but no title row; sort by item_id."""
    items = pa.array(item_ids, pa.string()) if isinstance(item_ids, list) else item_ids
    missing = items.filter(pc.invert(pc.is_in(items, value_set=titles.column(ITEM_ID).combine_chunks())))
    empty_lists = pa.array([[]] * len(missing), pa.list_(pa.string()))
    extra = pa.table({ITEM_ID: missing, "title": pa.nulls(len(missing), pa.string()), "genres": empty_lists,
                      "tags": empty_lists, "description": pa.nulls(len(missing), pa.string()),
                      "launch_date": pa.nulls(len(missing), pa.int64())}, schema=TITLE_SCHEMA)
    table = pa.concat_tables([titles, extra])
    return table.take(pc.sort_indices(table, [(ITEM_ID, "ascending")]))
