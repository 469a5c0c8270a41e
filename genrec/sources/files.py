"""File access through Beam's FileSystems, so every reader works on local paths and gs:// alike.

Beam's registry picks the file system from the URI scheme, which is what Dataflow workers use too;
going through it (rather than `open`) is what lets `genrec extract --events gs://...` run unchanged.
"""
from __future__ import annotations

import io
import os
import posixpath

from apache_beam.io.filesystems import FileSystems

from genrec.errors import InputError


def use_anonymous_gcs_for_emulator() -> None:
    """With STORAGE_EMULATOR_HOST set (a loopback fake GCS), make Beam's GCS client anonymous.

    Beam otherwise searches for Google credentials with retries for about 30 s per process before
    going anonymous. Beam (pinned to 2.77) caches that search's result in `_Credentials`; seeding the
    cache with "no credentials" is the same decision, made at once. Real GCS is unaffected.
    """
    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        return
    try:
        from apache_beam.internal.gcp import auth
    except ImportError:  # Beam without the gcp extra: nothing to configure
        return
    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials_init = True
        auth._Credentials._credentials = None


use_anonymous_gcs_for_emulator()


def is_glob(uri: str) -> bool:
    """True when the URI contains glob characters (`*`, `?`, `[`)."""
    return any(ch in uri for ch in "*?[")


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or a gs:// URI."""
    return FileSystems.join(uri, *parts)


def basename(uri: str) -> str:
    """The last path component of a local path or gs:// URI."""
    return posixpath.basename(uri.rstrip("/"))


def match(pattern: str) -> list[str]:
    """Sorted paths matching a glob (empty list when nothing matches)."""
    try:
        result = FileSystems.match([pattern])[0]
    except Exception:  # Beam raises BeamIOError when nothing matches on some file systems
        return []
    return sorted(m.path for m in result.metadata_list)


def list_folder(uri: str) -> list[str]:
    """Files directly or indirectly under a folder, sorted (a folder on GCS is a key prefix)."""
    found = match(join(uri, "**")) or match(join(uri, "*"))
    base = uri.rstrip("/") + "/"
    return sorted(p for p in found if p.startswith(base) and not p.endswith("/"))


def exists(uri: str) -> bool:
    """True when a file exists at `uri`."""
    try:
        return FileSystems.exists(uri)
    except Exception:
        return False


def read_bytes(uri: str) -> bytes:
    """The whole file as bytes; an unreadable file raises InputError naming it."""
    try:
        with FileSystems.open(uri, compression_type="uncompressed") as handle:
            return handle.read()
    except Exception as exc:  # noqa: BLE001 - any I/O failure becomes one actionable line
        raise InputError(f"{uri}: cannot read file ({type(exc).__name__}: {exc})") from None


def size(uri: str) -> int:
    """Size of a file in bytes."""
    try:
        return int(FileSystems.match([uri])[0].metadata_list[0].size_in_bytes)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{uri}: cannot stat file ({type(exc).__name__}: {exc})") from None


def first_line(uri: str) -> bytes:
    """The first line of a file, with its newline (a header to prepend to later chunks)."""
    with open_seekable(uri) as handle:
        return handle.readline()


def read_owned_lines(uri: str, start: int, end: int) -> tuple[int, bytes]:
    """(offset, bytes) of the lines whose first byte lies in [start, end) (end < 0: to the end of file).

    Chunks cut at arbitrary byte offsets therefore own disjoint, complete lines: a chunk skips the
    line already under way at `start` and finishes the line under way at `end`.
    """
    try:
        with FileSystems.open(uri, compression_type="uncompressed") as handle:
            if start > 0:
                handle.seek(start - 1)
                if handle.read(1) != b"\n":
                    handle.readline()  # the line under way belongs to the previous chunk
            begin = handle.tell()
            if end < 0:
                return begin, handle.read()
            data = handle.read(max(end - begin, 0))
            if data and not data.endswith(b"\n"):
                data += handle.readline()
            return begin, data
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{uri}: cannot read bytes {start}-{end} ({type(exc).__name__}: {exc})") from None


def open_seekable(uri: str) -> io.IOBase:
    """A seekable binary handle (Parquet footers need random access)."""
    try:
        return FileSystems.open(uri, compression_type="uncompressed")
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{uri}: cannot open file ({type(exc).__name__}: {exc})") from None


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file (local folders are created as needed)."""
    parent = posixpath.dirname(uri)
    if "://" not in uri and not os.path.isdir(parent):  # object stores have no folders to create
        os.makedirs(parent, exist_ok=True)  # exist_ok: parallel workers create the same folders
    with FileSystems.create(uri, compression_type="uncompressed") as handle:
        handle.write(data)


def delete_folder(uri: str) -> None:
    """Remove a folder's previous contents so stale shards from an earlier run never mix in."""
    paths = list_folder(uri)
    if paths:
        FileSystems.delete(paths)
