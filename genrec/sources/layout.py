"""Work out what an `events_uri` points at (file, folder or glob; local or gs://) with no flags.

A folder is recognised from its contents: MovieLens 100K (`u.data`), 1M (`ratings.dat`),
latest/20M/25M/32M (`ratings.csv`), or the canonical layout (`events.parquet|csv|jsonl` or an
`events/` folder of shards). Title metadata is found beside the events unless given explicitly.
"""
from __future__ import annotations

from dataclasses import dataclass

from genrec.errors import InputError
from genrec.sources import files

_CANONICAL_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
                         ".ndjson": "jsonl", ".json": "jsonl"}
_MOVIELENS_EVENTS = {"u.data": "movielens-100k", "ratings.dat": "movielens-1m", "ratings.csv": "movielens-csv"}
_MOVIELENS_TITLES = {"movielens-100k": "u.item", "movielens-1m": "movies.dat", "movielens-csv": "movies.csv"}


@dataclass(frozen=True)
class SourceSpec:
    """Resolved input: event files with their formats, and title/tag files (possibly none)."""

    event_files: tuple[tuple[str, str], ...]  # (path, format name), sorted by path
    title_files: tuple[str, ...] = ()
    tag_files: tuple[str, ...] = ()  # MovieLens tags.csv

    @property
    def kind(self) -> str:
        """The event format(s) found, for metrics and the summary page."""
        return ",".join(sorted({fmt for _, fmt in self.event_files}))


def _extension_format(path: str) -> str | None:
    name = files.basename(path).lower()
    if name in _MOVIELENS_EVENTS:
        return _MOVIELENS_EVENTS[name]
    for ext, fmt in _CANONICAL_EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    return None


def _siblings(folder: str, names: tuple[str, ...]) -> dict[str, str]:
    """The files named `names` directly inside `folder` that exist."""
    found = {}
    for name in names:
        path = files.join(folder, name)
        if files.exists(path):
            found[name] = path
    return found


def _parent(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0] if "/" in uri.rstrip("/") else "."


def _titles_beside(folder: str, event_format: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if event_format in _MOVIELENS_TITLES:
        found = _siblings(folder, (_MOVIELENS_TITLES[event_format], "tags.csv"))
        titles = tuple(p for n, p in found.items() if n != "tags.csv")
        tags = (found["tags.csv"],) if "tags.csv" in found and event_format == "movielens-csv" else ()
        return titles, tags
    found = _siblings(folder, ("titles.parquet", "titles.csv", "titles.jsonl"))
    return tuple(found.values())[:1], ()


def _resolve_titles(titles_uri: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if files.is_glob(titles_uri):
        paths = files.match(titles_uri)
    elif files.exists(titles_uri):
        paths = [titles_uri]
    else:
        paths = [p for p in files.list_folder(titles_uri)
                 if files.basename(p).lower().startswith(("titles", "movies", "u.item")) or files.basename(p) == "tags.csv"]
    if not paths:
        raise InputError(f"{titles_uri}: no title metadata found")
    tags = tuple(p for p in paths if files.basename(p) == "tags.csv")
    return tuple(p for p in paths if p not in tags), tags


def _folder_spec(folder: str) -> SourceSpec:
    listing = files.list_folder(folder)
    top = {files.basename(p): p for p in listing if _parent(p) == folder.rstrip("/")}
    for name, fmt in _MOVIELENS_EVENTS.items():
        if name in top:
            titles, tags = _titles_beside(folder, fmt)
            return SourceSpec(((top[name], fmt),), titles, tags)
    for name in ("events.parquet", "events.csv", "events.jsonl"):
        if name in top:
            titles, _ = _titles_beside(folder, "canonical")
            return SourceSpec(((top[name], _extension_format(name)),), titles)
    shards_dir = folder.rstrip("/") + "/events/"
    shards = [p for p in listing if p.startswith(shards_dir) and _extension_format(p) in ("parquet", "csv", "jsonl")]
    if shards:
        titles, _ = _titles_beside(folder, "canonical")
        return SourceSpec(tuple((p, _extension_format(p)) for p in sorted(shards)), titles)
    if not listing:
        raise InputError(f"{folder}: no such file or folder, or it is empty")
    raise InputError(
        f"{folder}: no recognised events (expected u.data, ratings.dat, ratings.csv, events.parquet|csv|jsonl or events/)"
    )


def resolve(events_uri: str, titles_uri: str | None = None) -> SourceSpec:
    """Resolve an events URI (file, folder or glob) and optional titles URI into a SourceSpec."""
    uri = str(events_uri)
    if files.is_glob(uri):
        paths = files.match(uri)
        if not paths:
            raise InputError(f"{uri}: the pattern matches no files")
        formats = [(p, _extension_format(p)) for p in paths]
        unknown = [p for p, f in formats if f is None]
        if unknown:
            raise InputError(f"{unknown[0]}: unrecognised event file type (use .parquet, .csv or .jsonl)")
        spec = SourceSpec(tuple(formats))
    elif files.exists(uri) and not files.list_folder(uri):
        fmt = _extension_format(uri)
        if fmt is None:
            raise InputError(f"{uri}: unrecognised event file type (use .parquet, .csv, .jsonl or a MovieLens file)")
        titles, tags = _titles_beside(_parent(uri), fmt if fmt.startswith("movielens") else "canonical")
        spec = SourceSpec(((uri, fmt),), titles, tags)
    else:
        spec = _folder_spec(uri.rstrip("/") if not uri.endswith("://") else uri)
    if titles_uri:
        titles, tags = _resolve_titles(titles_uri)
        spec = SourceSpec(spec.event_files, titles, tags or spec.tag_files)
    return spec
