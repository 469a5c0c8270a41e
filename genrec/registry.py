"""The champion pointer: which published model serves, swapped only by compare-and-swap.

Layout under a registry URI (local path or gs://):

    champion.json              the pointer (JSON): model_uri, run_id, version, promoted_at, metrics,
                               data_window, evaluation summary, previous (the pointer it replaced)
    models/<run_id>/           one published copy per promoted run; config.json is written last, so a
                               reader (which needs it) never sees half a model; MODEL_CARD.md and
                               published.json sit beside the weights (checkpoints/ is not copied)

Two runs finishing together both read the same pointer generation; `storage.compare_and_swap` lets
exactly one replace it and the other gets `PromotionConflict`. The pointer is always a whole JSON
document (atomic replace locally, one object upload on GCS). `version` grows by one on every swap,
so the same content never comes back (no ABA) and readers can order pointers.
"""
from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime, timezone
from typing import Any

from genrec import storage
from genrec.errors import ConfigError, GenrecError, InputError, PromotionConflict
from genrec.events import MODEL_CONFIG_FILE, MODEL_METRICS_FILE

log = logging.getLogger(__name__)

POINTER_FILE = "champion.json"
MODELS_DIR = "models"
PUBLISHED_FILE = "published.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
UNPUBLISHED_DIRS = ("checkpoints", ".staging")  # resumable training state is not part of a served model
MAX_HISTORY = 50  # previous pointers kept nested in champion.json
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class PromotionRefused(GenrecError):
    """The evaluation did not bless the candidate, so it is not published."""


class _Unset:
    def __repr__(self) -> str:
        return "<current pointer>"


CURRENT = _Unset()  # `expected` default: whatever pointer is current when promote() reads it


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _strip_history(pointer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pointer.items() if k != "previous"}


def _trim(pointer: dict[str, Any] | None, depth: int) -> dict[str, Any] | None:
    """Keep at most `depth` nested previous pointers (bounded file size)."""
    if pointer is None:
        return None
    if depth <= 0:
        return None
    out = _strip_history(pointer)
    out["previous"] = _trim(pointer.get("previous"), depth - 1)
    return out


def _matches(current: dict[str, Any] | None, expected: dict[str, Any] | None) -> bool:
    """Is `current` the pointer the caller read earlier? (run_id and version, where given)."""
    if expected is None or current is None:
        return expected is None and current is None
    keys = [k for k in ("run_id", "version") if k in expected]
    if not keys:
        raise ConfigError("expected champion pointer has neither run_id nor version")
    return all(current.get(k) == expected[k] for k in keys)


def _describe(pointer: dict[str, Any] | None) -> str:
    if pointer is None:
        return "no champion"
    return f"champion run {pointer.get('run_id')} (version {pointer.get('version')})"


def _read_json_if_any(uri: str) -> dict[str, Any]:
    try:
        value = json.loads(storage.read_text(uri))
    except InputError:
        return {}
    except json.JSONDecodeError as err:
        raise InputError(f"{uri}: not valid JSON ({err.msg})") from None
    return value if isinstance(value, dict) else {}


def compact_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Candidate metrics worth keeping in the pointer: the primary comparison and, per task, the
    all-titles and cold-start figures at the primary delay."""
    primary = evaluation.get("primary") or {}
    delay = primary.get("delay")
    out: dict[str, Any] = {"primary": primary, "tasks": {}}
    for row in evaluation.get("rows", []):
        if row.get("delay") != delay or row.get("slice") not in ("all", "cold_start"):
            continue
        task = out["tasks"].setdefault(row["task"], {})
        task[f"{row['slice']}.{row['metric']}"] = row.get("candidate")
    return out


class Registry:
    """Champion pointer and published models under one URI (local path or gs://)."""

    def __init__(self, uri: str, max_history: int = MAX_HISTORY):
        if not uri:
            raise ConfigError("registry URI is empty")
        self.uri = str(uri).rstrip("/") if storage.is_remote(uri) else str(uri)
        self.pointer_uri = storage.join(self.uri, POINTER_FILE)
        self.max_history = max_history

    # --- reading -----------------------------------------------------------------------------------
    def _read(self) -> tuple[dict[str, Any] | None, int | None]:
        data, generation = storage.read_versioned(self.pointer_uri)
        if data is None:
            return None, None
        try:
            pointer = json.loads(data)
        except json.JSONDecodeError as err:
            raise InputError(f"{self.pointer_uri}: champion pointer is not valid JSON ({err.msg})") from None
        if not isinstance(pointer, dict) or "model_uri" not in pointer:
            raise InputError(f"{self.pointer_uri}: champion pointer lacks model_uri")
        return pointer, generation

    def champion(self) -> dict[str, Any] | None:
        """The current pointer (with its nested `previous` chain), or None before the first promotion."""
        return self._read()[0]

    def history(self) -> list[dict[str, Any]]:
        """Pointers newest first (the current champion, then each one it replaced), without nesting."""
        out, pointer = [], self.champion()
        while pointer is not None:
            out.append(_strip_history(pointer))
            pointer = pointer.get("previous")
        return out

    def model_uri(self, run_id: str) -> str:
        return storage.join(self.uri, MODELS_DIR, run_id)

    # --- writing -----------------------------------------------------------------------------------
    def _swap(self, new: dict[str, Any], generation: int | None, current: dict[str, Any] | None) -> None:
        data = json.dumps(new, indent=2, sort_keys=True).encode("utf-8")
        try:
            storage.compare_and_swap(self.pointer_uri, data, generation)
        except storage.StaleGeneration:
            raise PromotionConflict(
                f"{self.pointer_uri}: the champion changed while run {new['run_id']} was being promoted "
                f"(it was {_describe(current)}); not swapped, re-evaluate against the new champion"
            ) from None

    def promote(
        self,
        model_dir: str,
        run_id: str,
        evaluation: dict[str, Any],
        expected: dict[str, Any] | None | _Unset = CURRENT,
        data_window: dict[str, Any] | None = None,
        model_card_path: str | None = None,
    ) -> dict[str, Any]:
        """Publish `model_dir` under models/<run_id>/ and make it the champion.

        `expected` is the pointer the evaluation was made against (None: there was no champion); if
        the champion is something else now, or changes before the swap, PromotionConflict is raised
        and the pointer is untouched. Returns the new pointer.
        """
        from genrec.modelcard import render_model_card

        if not _RUN_ID.match(run_id or ""):
            raise ConfigError(f"run id {run_id!r}: use 1-128 letters, digits, '.', '_' or '-'")
        current, generation = self._read()
        if not isinstance(expected, _Unset) and not _matches(current, expected):
            raise PromotionConflict(
                f"{self.pointer_uri}: evaluated against {_describe(expected)} but the registry now has "
                f"{_describe(current)}; not promoted, re-evaluate against the current champion"
            )
        if current is not None and current.get("run_id") == run_id:
            raise PromotionConflict(f"{self.pointer_uri}: run {run_id} is already the champion")
        config = _read_json_if_any(storage.join(model_dir, MODEL_CONFIG_FILE))
        if not config:
            raise InputError(f"{storage.join(model_dir, MODEL_CONFIG_FILE)}: missing or empty; not a model directory")

        target = self.model_uri(run_id)
        if storage.exists(storage.join(target, MODEL_CONFIG_FILE)):
            raise PromotionConflict(f"{target}: a model is already published under run id {run_id}")
        window = data_window if data_window is not None else evaluation.get("data_window") or config.get("data_window")
        promoted_at = _now()
        pointer = {
            "model_uri": target,
            "run_id": run_id,
            "version": int(current.get("version", 0)) + 1 if current else 1,
            "promoted_at": promoted_at,
            "metrics": compact_metrics(evaluation),
            "data_window": window,
            "evaluation": {
                "decision": evaluation.get("decision"),
                "reasons": evaluation.get("reasons", []),
                "baseline": evaluation.get("baseline"),
            },
            "model": config.get("description") or config.get("preset"),
            "previous": _trim(current, self.max_history),
        }
        card = render_model_card(config, _read_json_if_any(storage.join(model_dir, MODEL_METRICS_FILE)),
                                 run_id, evaluation, current, window)
        files = [f for f in storage.list_files(model_dir)
                 if f not in (MODEL_CARD_FILE, PUBLISHED_FILE, MODEL_CONFIG_FILE)
                 and f.split("/")[0] not in UNPUBLISHED_DIRS and not f.split("/")[-1].startswith(".")]
        for name in files:
            storage.copy_file(storage.join(model_dir, name), storage.join(target, name))
        storage.write_text(storage.join(target, MODEL_CARD_FILE), card)
        storage.write_text(storage.join(target, PUBLISHED_FILE),
                           json.dumps(_strip_history(pointer), indent=2, sort_keys=True))
        storage.copy_file(storage.join(model_dir, MODEL_CONFIG_FILE), storage.join(target, MODEL_CONFIG_FILE))
        if model_card_path:
            storage.write_text(model_card_path, card)
        self._swap(pointer, generation, current)
        log.info("promoted run %s to champion (%s), replacing %s", run_id, target, _describe(current))
        return pointer

    def rollback(self, expected: dict[str, Any] | None | _Unset = CURRENT) -> dict[str, Any]:
        """Make the previous champion current again (compare-and-swap like promote). Repeated
        rollbacks walk further back in time. Returns the new pointer."""
        current, generation = self._read()
        if not isinstance(expected, _Unset) and not _matches(current, expected):
            raise PromotionConflict(
                f"{self.pointer_uri}: expected {_describe(expected)} but found {_describe(current)}; not rolled back"
            )
        if current is None or not current.get("previous"):
            raise ConfigError(f"{self.pointer_uri}: no previous champion to roll back to")
        previous = current["previous"]
        if not storage.exists(storage.join(previous["model_uri"], MODEL_CONFIG_FILE)):
            raise InputError(f"{previous['model_uri']}: previous champion's model is gone; not rolled back")
        restored = dict(previous)
        restored["version"] = int(current.get("version", 0)) + 1
        restored["restored_at"] = _now()
        restored["rolled_back_from"] = _strip_history(current)
        restored["previous"] = _trim(previous.get("previous"), self.max_history)
        self._swap(restored, generation, current)
        log.info("rolled back champion from run %s to run %s", current.get("run_id"), previous.get("run_id"))
        return restored


def expected_from_evaluation(evaluation: dict[str, Any]) -> dict[str, Any] | None | _Unset:
    """The champion an evaluation was made against: None when its baseline was not a champion
    (first run), {"run_id": ...} when it names one, CURRENT when it cannot tell."""
    kind = evaluation.get("baseline_kind")
    if kind == "popularity":
        return None
    if kind == "champion" and evaluation.get("baseline_run_id"):
        return {"run_id": evaluation["baseline_run_id"]}
    return CURRENT


def promote(
    registry_uri: str,
    model_dir: str,
    evaluation_path: str,
    run_id: str,
    model_card_path: str | None = None,
) -> dict[str, Any]:
    """Promote `model_dir` if and only if the shadow evaluation at `evaluation_path` says "promote".

    Raises PromotionRefused otherwise, PromotionConflict if the champion changed since the evaluation.
    """
    try:
        evaluation = json.loads(storage.read_text(evaluation_path))
    except json.JSONDecodeError as err:
        raise InputError(f"{evaluation_path}: evaluation is not valid JSON ({err.msg})") from None
    if not isinstance(evaluation, dict) or evaluation.get("decision") != "promote":
        decision = evaluation.get("decision") if isinstance(evaluation, dict) else None
        reasons = "; ".join(evaluation.get("reasons", [])) if isinstance(evaluation, dict) else ""
        raise PromotionRefused(f"{evaluation_path}: decision is {decision!r}, not 'promote' ({reasons})")
    started = time.monotonic()
    pointer = Registry(registry_uri).promote(model_dir, run_id, evaluation,
                                             expected=expected_from_evaluation(evaluation),
                                             model_card_path=model_card_path)
    log.info("promotion of %s took %.1fs", run_id, time.monotonic() - started)
    return pointer
