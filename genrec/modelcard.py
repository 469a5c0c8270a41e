"""A Markdown model card written next to every published model.

A reviewer opening models/<run_id>/ (or the KFP Markdown artifact) sees what the model is, which data
it saw, how it did against the champion in the shadow window, why it was promoted and what it replaced.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

_CONFIG_KEYS = ("description", "preset", "members", "num_params", "tasks", "mtp_depth", "loss", "sampler", "item_tower",
                "vocabulary_fingerprint")
_ARCHITECTURE_KEYS = ("n_layer", "n_head", "n_embd", "max_len", "num_items", "item_dim", "semantic_dim",
                      "tower_combine")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _ci(row: dict[str, Any]) -> str:
    lower, upper = row.get("lower"), row.get("upper")
    if lower is None or upper is None:
        return "-"
    return f"[{_fmt(lower)}, {_fmt(upper)}]"


def metrics_table(rows: list[dict[str, Any]], metrics: tuple[str, ...] = ()) -> list[str]:
    """Markdown table lines: one line per task x delay x slice x metric of a shadow evaluation."""
    lines = ["| task | delay | slice | metric | candidate | baseline | diff | CI | users |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if metrics and row.get("metric") not in metrics:
            continue
        lines.append(
            f"| {_fmt(row.get('task'))} | {_fmt(row.get('delay'))} | {_fmt(row.get('slice'))} | "
            f"{_fmt(row.get('metric'))} | {_fmt(row.get('candidate'))} | {_fmt(row.get('baseline'))} | "
            f"{_fmt(row.get('diff'))} | {_ci(row)} | {_fmt(row.get('n_users'))} |"
        )
    return lines


def render_model_card(
    config: dict[str, Any],
    training_metrics: dict[str, Any],
    run_id: str,
    evaluation: dict[str, Any],
    previous: dict[str, Any] | None,
    data_window: dict[str, Any] | None,
) -> str:
    """The card as Markdown text. `config`/`training_metrics` are the model dir's config.json and
    metrics.json; `previous` is the champion pointer being replaced (None on a first promotion)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Model card: run {run_id}", "", f"Published {now}.", "", "## Model", ""]
    for key in _CONFIG_KEYS:
        if key in config:
            lines.append(f"- **{key}**: {_fmt(config[key])}")
    architecture = config.get("model") if isinstance(config.get("model"), dict) else {}
    shape = ", ".join(f"{k}={architecture[k]}" for k in _ARCHITECTURE_KEYS if k in architecture)
    if shape:
        lines.append(f"- **architecture**: {shape}")
    for key in ("num_params", "tokens", "steps"):
        if key in training_metrics and key not in config:
            lines.append(f"- **{key}**: {_fmt(training_metrics[key])}")
    lines += ["", "## Data window", ""]
    if data_window:
        lines += [f"- **{k}**: {_fmt(v)}" for k, v in sorted(data_window.items())]
    else:
        lines.append("- not recorded")
    lines += ["", "## Validation (training step)", ""]
    tasks = training_metrics.get("tasks") or {}
    if tasks:
        lines += ["| task | MRR | Recall@10 | NDCG@10 | loss |", "|---|---|---|---|---|"]
        for task, m in sorted(tasks.items()):
            lines.append(f"| {task} | {_fmt(m.get('mrr'))} | {_fmt(m.get('recall@10'))} | "
                         f"{_fmt(m.get('ndcg@10'))} | {_fmt(m.get('loss'))} |")
    else:
        lines.append("- not recorded")
    lines += ["", "## Shadow evaluation", "",
              f"Baseline: {_fmt(evaluation.get('baseline'))}.", "",
              f"Decision: **{_fmt(evaluation.get('decision'))}**", ""]
    lines += [f"- {reason}" for reason in evaluation.get("reasons", [])]
    rows = evaluation.get("rows") or []
    if rows:
        lines += [""] + metrics_table(rows, metrics=("mrr",))
    lines += ["", "## Previous champion", ""]
    if previous:
        lines += [f"- **run_id**: {_fmt(previous.get('run_id'))}",
                  f"- **model_uri**: {_fmt(previous.get('model_uri'))}",
                  f"- **promoted_at**: {_fmt(previous.get('promoted_at'))}",
                  f"- **version**: {_fmt(previous.get('version'))}"]
    else:
        lines.append("- none (first promotion)")
    return "\n".join(lines) + "\n"
