"""Small glue shared by the KFP components and the CLI, so neither repeats it.

Nothing here imports KFP: `log_metrics` takes any object with a `log_metric(name, value)` method.
"""
from __future__ import annotations

import logging
import math
import tempfile
from typing import Any, Mapping

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


def champion_model_dir(registry_uri: str) -> str | None:
    """Local directory of the current champion model, or None on a first run (no champion yet).
    A champion on gs:// is copied down once into a temporary directory."""
    from genrec.registry import Registry
    from genrec.storage import download_dir, is_remote

    pointer = Registry(registry_uri).champion()
    if not pointer:
        log.info("no champion in %s: first run", registry_uri)
        return None
    model_uri = pointer["model_uri"]
    if is_remote(model_uri):
        local = tempfile.mkdtemp(prefix="champion-")
        download_dir(model_uri, local)
        return local
    return model_uri
