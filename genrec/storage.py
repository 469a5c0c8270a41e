"""One place that turns a URI (a local path or gs://bucket/key) into reads and writes.

Every stage that reads or writes artifacts outside its own working directory goes through here, so a
step never cares whether the registry or a model lives on local disk (tests, a laptop, a GCS FUSE mount)
or in a bucket. Writes are atomic (a reader sees the old bytes or the new ones, never half a file) and
`compare_and_swap` gives optimistic concurrency:

- gs://: object generations, with `if_generation_match` preconditions on upload;
- local: an exclusive `fcntl.flock` on `<path>.lock` around read-compare-replace, the generation being
  derived from the file's bytes (callers that need ABA safety put a version counter in their content,
  as the registry does). The kernel drops the lock when a process dies, so a crash never wedges it.

`STORAGE_EMULATOR_HOST` (e.g. the fake GCS server in tests) is honoured with anonymous credentials.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
from typing import Iterable

from genrec.errors import GenrecError, InputError

GCS_SCHEME = "gs://"
LOCK_SUFFIX = ".lock"


class StaleGeneration(GenrecError):
    """A compare-and-swap found a different generation than the caller expected."""


def is_remote(uri: str) -> bool:
    """True for gs:// URIs (anything else is a local path)."""
    return str(uri).startswith(GCS_SCHEME)


def join(uri: str, *parts: str) -> str:
    """Join path segments onto a local path or a gs:// URI."""
    if is_remote(uri):
        out = str(uri).rstrip("/")
        for part in parts:
            out = out + "/" + part.strip("/")
        return out
    return os.path.join(str(uri), *parts)


def split_gcs(uri: str) -> tuple[str, str]:
    """'gs://bucket/a/b' -> ('bucket', 'a/b')."""
    if not is_remote(uri):
        raise InputError(f"{uri}: not a gs:// URI")
    rest = str(uri)[len(GCS_SCHEME):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise InputError(f"{uri}: gs:// URI without a bucket name")
    return bucket, key


# --- GCS client --------------------------------------------------------------------------------------
_clients = threading.local()


def gcs_client():
    """A google-cloud-storage client per thread (anonymous when STORAGE_EMULATOR_HOST is set)."""
    from google.cloud import storage

    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    cache = getattr(_clients, "by_host", None)
    if cache is None:
        cache = _clients.by_host = {}
    if emulator not in cache:
        if emulator:
            from google.auth.credentials import AnonymousCredentials

            project = os.environ.get("GOOGLE_CLOUD_PROJECT", "test")
            cache[emulator] = storage.Client(project=project, credentials=AnonymousCredentials())
        else:
            cache[emulator] = storage.Client()
    return cache[emulator]


def _blob(uri: str):
    bucket, key = split_gcs(uri)
    if not key:
        raise InputError(f"{uri}: gs:// URI names a bucket, not an object")
    return gcs_client().bucket(bucket).blob(key)


def _precondition_failed() -> type[Exception]:
    from google.api_core import exceptions

    return exceptions.PreconditionFailed


def _not_found() -> type[Exception]:
    from google.api_core import exceptions

    return exceptions.NotFound


# --- whole-file reads and writes -----------------------------------------------------------------------
def exists(uri: str) -> bool:
    """True when a file (local) or object (gs://) exists at `uri`."""
    if is_remote(uri):
        return _blob(uri).exists()
    return os.path.isfile(uri)


def read_bytes(uri: str) -> bytes:
    """The file's bytes; InputError naming the URI when it does not exist."""
    if is_remote(uri):
        try:
            return _blob(uri).download_as_bytes()
        except _not_found():
            raise InputError(f"{uri}: not found") from None
    try:
        with open(uri, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError(f"{uri}: not found") from None


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def _local_atomic_write(path: str, data: bytes) -> None:
    """Temp file in the same directory + fsync + os.replace: readers see old or new, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes(uri: str, data: bytes) -> None:
    """Atomic write (a GCS upload is atomic per object; locally temp file + os.replace)."""
    if is_remote(uri):
        _blob(uri).upload_from_string(data)
    else:
        _local_atomic_write(uri, data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


# --- optimistic concurrency ----------------------------------------------------------------------------
def _content_generation(data: bytes) -> int:
    """Local generation: a positive 63-bit number derived from the bytes."""
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") >> 1 or 1


def read_versioned(uri: str) -> tuple[bytes | None, int | None]:
    """(bytes, generation) of the file, or (None, None) when it does not exist.

    The generation is what `compare_and_swap` expects back to replace exactly this content.
    """
    if is_remote(uri):
        for _ in range(10):
            blob = _blob(uri)
            bucket = blob.bucket
            current = bucket.get_blob(blob.name)
            if current is None:
                return None, None
            try:
                data = current.download_as_bytes(if_generation_match=current.generation)
            except (_precondition_failed(), _not_found()):
                continue  # replaced between metadata and download: read again
            return data, int(current.generation)
        raise StaleGeneration(f"{uri}: changed on every one of 10 reads; too much contention")
    try:
        with open(uri, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, None
    return data, _content_generation(data)


def compare_and_swap(uri: str, data: bytes, expected_generation: int | None) -> int:
    """Write `data` only if the file is still at `expected_generation` (None: must not exist yet).

    Returns the new generation; raises StaleGeneration when someone else wrote first, so of several
    writers that read the same generation exactly one succeeds.
    """
    if is_remote(uri):
        blob = _blob(uri)
        try:
            blob.upload_from_string(data, if_generation_match=expected_generation or 0)
        except _precondition_failed():
            raise StaleGeneration(
                f"{uri}: generation is no longer {expected_generation} (another writer got there first)"
            ) from None
        return int(blob.generation)
    directory = os.path.dirname(os.path.abspath(uri))
    os.makedirs(directory, exist_ok=True)
    with open(uri + LOCK_SUFFIX, "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            _, current = read_versioned(uri)
            if current != expected_generation:
                raise StaleGeneration(
                    f"{uri}: generation is {current}, expected {expected_generation} "
                    "(another writer got there first)"
                )
            _local_atomic_write(uri, data)
            return _content_generation(data)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


# --- directories -----------------------------------------------------------------------------------------
def list_files(uri: str) -> list[str]:
    """Sorted paths, relative to `uri`, of every file below it (recursive; empty if none)."""
    if is_remote(uri):
        bucket, key = split_gcs(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        names = [b.name[len(prefix):] for b in gcs_client().list_blobs(bucket, prefix=prefix)]
        return sorted(n for n in names if n and not n.endswith("/"))
    if not os.path.isdir(uri):
        return []
    out = []
    for root, _, files in os.walk(uri):
        for name in files:
            out.append(os.path.relpath(os.path.join(root, name), uri).replace(os.sep, "/"))
    return sorted(out)


def copy_file(src: str, dst: str) -> None:
    """Copy one file between any two of local / gs:// (streamed, not held in memory, when local)."""
    if is_remote(src) and is_remote(dst):
        source = _blob(src)
        target_bucket, target_key = split_gcs(dst)
        source.bucket.copy_blob(source, gcs_client().bucket(target_bucket), target_key)
    elif is_remote(src):
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        try:
            _blob(src).download_to_filename(dst)
        except _not_found():
            raise InputError(f"{src}: not found") from None
    elif is_remote(dst):
        if not os.path.isfile(src):
            raise InputError(f"{src}: not found")
        _blob(dst).upload_from_filename(src)
    else:
        if not os.path.isfile(src):
            raise InputError(f"{src}: not found")
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        tmp = dst + ".partial"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def copy_dir(src: str, dst: str, last: Iterable[str] = ()) -> list[str]:
    """Copy every file below `src` to `dst` (local or gs:// either side); the files named in `last`
    are copied after all others, in that order, so a reader waiting for them never sees a partial
    directory. Returns the relative paths copied. InputError when `src` holds no files."""
    files = list_files(src)
    if not files:
        raise InputError(f"{src}: no files to copy")
    last = [name for name in last if name in files]
    ordered = [f for f in files if f not in last] + last
    for name in ordered:
        copy_file(join(src, name), join(dst, name))
    return ordered


def upload_dir(local_dir: str, uri: str, last: Iterable[str] = ()) -> list[str]:
    return copy_dir(local_dir, uri, last)


def download_dir(uri: str, local_dir: str) -> list[str]:
    return copy_dir(uri, local_dir)
