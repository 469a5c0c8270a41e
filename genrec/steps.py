"""Small glue shared by the KFP components and the CLI, so neither repeats it.

Nothing here imports KFP: `log_metrics` takes any object with a `log_metric(name, value)` method.
"""
from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from typing import Any, Iterator, Mapping, NamedTuple

log = logging.getLogger(__name__)

EMBEDDING_CACHE_FILE = "embedding_cache.parquet"


def flatten_numbers(result: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested dict -> {"a.b.c": number} for every finite int/float leaf (bools and strings skipped)."""
    out: dict[str, float] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_numbers(value, prefix=f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                out[name] = float(value)
    return out


def log_metrics(metrics: Any, result: Mapping[str, Any]) -> None:
    """Write every numeric leaf of a step's result dict to a KFP Metrics artifact (shown in the UI)."""
    for name, value in sorted(flatten_numbers(result).items()):
        metrics.log_metric(name, value)


def embedding_cache_uri(registry_uri: str) -> str:
    return registry_uri.rstrip("/") + "/" + EMBEDDING_CACHE_FILE


class Champion(NamedTuple):
    local_dir: str  # the model folder on this machine, for the length of the `with` block
    model_uri: str  # where the registry keeps it (what to record)


@contextlib.contextmanager
def champion_model(registry_uri: str | None) -> Iterator[Champion | None]:
    """The current champion model for the length of a `with` block, or None on a first run (no
    champion yet, or no registry). A champion on gs:// is copied down into a temporary directory
    that the block's end removes: a step that warm-starts from it or replays it leaves no copy."""
    from genrec.registry import Registry
    from genrec.storage import download_dir, is_remote

    pointer = Registry(registry_uri).champion() if registry_uri else None
    if not pointer:
        if registry_uri:
            log.info("no champion in %s: first run", registry_uri)
        yield None
        return
    model_uri = pointer["model_uri"]
    if not is_remote(model_uri):
        yield Champion(model_uri, model_uri)
        return
    with tempfile.TemporaryDirectory(prefix="champion-") as local:
        download_dir(model_uri, local)
        yield Champion(local, model_uri)
