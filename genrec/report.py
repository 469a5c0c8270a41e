"""One self-contained HTML page for a local (kfp.local) pipeline run, so a reviewer sees every step,
its metrics, reports and plots, and the promote/hold decision without a KFP UI.

kfp.local writes each task under `<pipeline_root>/<pipeline-name>-<YYYY-mm-dd-HH-MM-SS-ffffff>/`, one
folder per task (`<task>/`, loop iterations as `for-loop-N-iteration-I/<task>/`), holding one file or
folder per output artifact plus `executor_output.json` with the output parameters and every artifact's
metadata. Metrics artifacts have no file: their values are that metadata. The run folder records no
artifact types, so types are recognised from content (PNG magic, HTML, Markdown, JSON).

Everything is inlined (CSS, base64 PNGs, HTML reports in sandboxed iframes via `srcdoc`), so the page
can be mailed or attached to a ticket and still show everything.
"""
from __future__ import annotations

import base64
import datetime
import html
import json
import os
import re
from dataclasses import dataclass, field
from typing import Optional

from genrec.errors import InputError

EXECUTOR_OUTPUT = "executor_output.json"
DECISION_PARAMETER = "decision"  # a named output (NamedTuple field) holding the decision
SINGLE_OUTPUT = "Output"  # a component returning a bare `str` decision
PROMOTE_DECISION, HOLD_DECISION = "promote", "hold"
PROMOTE_TASK_PREFIX = "promote"
_RUN_NAME = re.compile(r"^(?P<pipeline>.+)-(?P<stamp>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{6})$")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_BYTES = 200_000  # larger JSON/text artifacts are listed, not inlined
MAX_REPORT_BYTES = 20_000_000  # HTML/Markdown reports often carry base64 plots: inline far bigger ones
MAX_IMAGE_BYTES = 5_000_000
MAX_FOLDER_LISTING = 40
MAX_IMAGES_PER_FOLDER = 6


@dataclass(frozen=True)
class ArtifactView:
    """One output artifact as the page shows it."""

    name: str
    path: str
    kind: str  # metrics | html | markdown | image | json | text | folder | binary | missing
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TaskView:
    """One executed task: where its outputs are, its output parameters, its artifacts."""

    name: str  # path under the run folder, e.g. "train" or "for-loop-2-iteration-0/train-2"
    folder: str
    finished: Optional[float]  # mtime of executor_output.json; None when the task wrote none
    parameters: dict
    artifacts: tuple

    @property
    def metrics(self) -> dict:
        merged: dict = {}
        for artifact in self.artifacts:
            if artifact.kind == "metrics":
                merged.update(artifact.metadata)
        return merged


@dataclass(frozen=True)
class Decision:
    """What the run decided and whether promotion ran."""

    verdict: str  # PROMOTED | HOLD | PROMOTE (not run) | UNKNOWN
    decided_by: str  # task that output the decision ("" if none)
    promoted_by: str  # promote task that ran ("" if none)
    reasons: tuple
    champion: str  # what the promote task returned (the published model URI), if anything


# ------------------------------------------------------------------------------------ reading a run

_IR_KINDS = {"system.Metrics": "metrics", "system.HTML": "html", "system.Markdown": "markdown"}


@dataclass(frozen=True)
class PipelineShape:
    """What the compiled pipeline (the YAML IR) says about its steps: every container task's name and
    the declared type of its outputs where the page can use it (Metrics, HTML, Markdown)."""

    steps: tuple  # container task names, in IR order
    output_kinds: dict  # (task name, output name) -> metrics | html | markdown


def read_pipeline_shape(package_path: str) -> PipelineShape:
    """Walk the IR's DAGs (loops and conditions are sub-DAGs) down to container tasks."""
    import yaml  # comes with kfp and Beam; only needed when a package is given

    try:
        with open(package_path) as f:
            spec = next(d for d in yaml.safe_load_all(f) if d)
        components, root = spec["components"], spec["root"]
    except (OSError, StopIteration, KeyError, TypeError, yaml.YAMLError) as exc:
        raise InputError(f"{package_path}: not a compiled KFP pipeline ({type(exc).__name__})") from exc
    steps, kinds = [], {}

    def walk(dag: dict) -> None:
        for task_name, task in (dag.get("tasks") or {}).items():
            component = components.get(task.get("componentRef", {}).get("name", ""), {})
            if "dag" in component:
                walk(component["dag"])
                continue
            steps.append(task_name)
            for output, definition in (component.get("outputDefinitions", {}).get("artifacts") or {}).items():
                kind = _IR_KINDS.get(definition.get("artifactType", {}).get("schemaTitle", ""))
                if kind:
                    kinds[(task_name, output)] = kind

    walk(root.get("dag") or {})
    return PipelineShape(tuple(steps), kinds)



def latest_run_dir(pipeline_root: str) -> str:
    """The newest `<pipeline>-<timestamp>` folder under a kfp.local pipeline root."""
    if not os.path.isdir(pipeline_root):
        raise InputError(f"{pipeline_root}: no such pipeline root folder")
    runs = [d for d in os.listdir(pipeline_root)
            if _RUN_NAME.match(d) and os.path.isdir(os.path.join(pipeline_root, d))]
    if not runs:
        raise InputError(f"{pipeline_root}: holds no kfp.local run folder (<pipeline>-<timestamp>)")
    return os.path.join(pipeline_root, max(runs, key=lambda d: _RUN_NAME.match(d).group("stamp")))


def _is_numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sniff(path: str, name: str, metadata: dict) -> str:
    numeric = bool(metadata) and all(_is_numeric(v) for v in metadata.values())
    if numeric and (not os.path.exists(path) or "metric" in name.lower()):
        return "metrics"
    if not os.path.exists(path):
        return "missing"
    if os.path.isdir(path):
        return "folder"
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(_PNG_MAGIC):
        return "image"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    stripped = text.lstrip().lower()
    if stripped.startswith(("<!doctype html", "<html")) or (stripped.startswith("<") and "</" in stripped):
        return "html"
    if stripped.startswith(("{", "[")):
        try:
            with open(path) as f:
                json.load(f)
            return "json"
        except (ValueError, UnicodeDecodeError):
            pass
    lowered = name.lower()
    if lowered.endswith((".md", "_md", "-md")) or "markdown" in lowered or "card" in lowered or \
            stripped.startswith("#"):
        return "markdown"
    return "text"


def _task_folders(run_dir: str) -> list:
    """Every folder under the run that holds a task's outputs (an executor_output.json), plus leaf
    folders without one (a task that failed before writing its outputs)."""
    found = []
    for folder, dirs, files in os.walk(run_dir):
        if EXECUTOR_OUTPUT in files:
            found.append(folder)
            dirs[:] = []  # artifact folders below a task are outputs, not tasks
        elif folder != run_dir and not dirs and not files:
            found.append(folder)
    return found


def read_task(run_dir: str, folder: str, shape: Optional[PipelineShape] = None) -> TaskView:
    """One task folder as a TaskView (artifact kinds from the IR when given, else sniffed from content)."""
    name = os.path.relpath(folder, run_dir).replace(os.sep, "/")
    out_path = os.path.join(folder, EXECUTOR_OUTPUT)
    if not os.path.exists(out_path):
        return TaskView(name, folder, None, {}, ())
    try:
        with open(out_path) as f:
            output = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{out_path}: unreadable executor output ({exc})") from exc
    artifacts = []
    for output_name, entry in sorted((output.get("artifacts") or {}).items()):
        for item in entry.get("artifacts") or []:
            path = item.get("uri") or os.path.join(folder, output_name)
            if not os.path.exists(path):  # the run folder was moved: fall back to its own layout
                path = os.path.join(folder, output_name)
            metadata = item.get("metadata") or {}
            kind = shape.output_kinds.get((_base_name(name), output_name)) if shape else None
            if kind is None or (kind != "metrics" and not os.path.isfile(path)):
                kind = _sniff(path, output_name, metadata)
            artifacts.append(ArtifactView(output_name, path, kind, metadata))
    return TaskView(name, folder, os.path.getmtime(out_path), output.get("parameterValues") or {}, tuple(artifacts))


def read_run(run_dir: str, shape: Optional[PipelineShape] = None) -> list:
    """Every task of the run, in the order they finished (unfinished ones last)."""
    if not os.path.isdir(run_dir):
        raise InputError(f"{run_dir}: no such run folder")
    tasks = [read_task(run_dir, f, shape) for f in _task_folders(run_dir)]
    if not tasks:
        raise InputError(f"{run_dir}: no task outputs found (is this a kfp.local run folder?)")
    return sorted(tasks, key=lambda t: (t.finished is None, t.finished or 0.0, t.name))


def _base_name(task_name: str) -> str:
    return task_name.rsplit("/", 1)[-1]


def find_decision(tasks: list) -> Decision:
    """The promote/hold decision: the task that output a `decision` parameter, and whether a promote
    task ran. A 'promote' decision whose promote step did not run is reported as such, not hidden."""
    deciding, value = None, ""
    for task in tasks:
        if DECISION_PARAMETER in task.parameters:
            deciding, value = task, str(task.parameters[DECISION_PARAMETER])
            break
        if str(task.parameters.get(SINGLE_OUTPUT)) in (PROMOTE_DECISION, HOLD_DECISION):
            deciding, value = task, str(task.parameters[SINGLE_OUTPUT])
            break
    promoted = next((t for t in tasks if _base_name(t.name).startswith(PROMOTE_TASK_PREFIX) and t.finished), None)
    reasons: tuple = ()
    if deciding is not None:
        for artifact in deciding.artifacts:
            if artifact.kind == "json":
                try:
                    with open(artifact.path) as f:
                        content = json.load(f)
                except (OSError, ValueError):
                    continue
                if isinstance(content, dict) and isinstance(content.get("reasons"), list):
                    reasons = tuple(str(r) for r in content["reasons"])
                    break
    champion = ""
    if promoted is not None:
        champion = str(promoted.parameters.get(SINGLE_OUTPUT, "") or "")
    if deciding is None:
        verdict = "PROMOTED" if promoted else "UNKNOWN"
    elif value == PROMOTE_DECISION:
        verdict = "PROMOTED" if promoted else "PROMOTE (not run)"
    else:
        verdict = "HOLD"
    return Decision(verdict, deciding.name if deciding else "", promoted.name if promoted else "", reasons, champion)


# ------------------------------------------------------------------------------------- rendering

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b9c0cf;font-size:13px}main{padding:20px 28px;max-width:1200px}
.banner{border-radius:8px;padding:14px 18px;margin-bottom:18px;font-size:18px;font-weight:600}
.banner small{display:block;font-weight:400;font-size:13px;margin-top:4px}
.banner ul{font-weight:400;font-size:14px;margin:6px 0 0}
.PROMOTED{background:#dff5e3;border:1px solid #3c9d52;color:#1e5a2c}
.HOLD{background:#fff4d6;border:1px solid #c99a1a;color:#6b4f00}
.UNKNOWN,.PROMOTE-not-run{background:#fde2e1;border:1px solid #c0392b;color:#7b1d14}
table{border-collapse:collapse;background:#fff;margin:8px 0 14px;font-size:13px}
th,td{border:1px solid #dde1e8;padding:5px 9px;text-align:left;vertical-align:top}th{background:#eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.skipped td{color:#8a90a0;font-style:italic}
section.step{background:#fff;border:1px solid #dde1e8;border-radius:8px;margin:14px 0;padding:4px 16px 12px}
section.step h2{font-size:17px;margin:12px 0 6px}.muted{color:#6b7385;font-size:12px}
.artifact{margin:12px 0}.artifact h3{font-size:14px;margin:6px 0}
iframe{width:100%;height:420px;border:1px solid #dde1e8;border-radius:4px;resize:vertical;background:#fff}
img{max-width:100%;border:1px solid #dde1e8;border-radius:4px;background:#fff}
pre{background:#f3f4f7;padding:10px;overflow:auto;max-height:420px;font-size:12px}
.md{border-left:3px solid #dde1e8;padding-left:12px}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:  # counts and epoch seconds stay whole
            return str(int(value))
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)[:300]
    return str(value)


def _table(rows: dict, title: str = "") -> str:
    if not rows:
        return ""
    body = "".join(f'<tr><th>{_e(k)}</th><td class="{"num" if _is_numeric(v) else ""}">{_e(_fmt(v))}</td></tr>'
                   for k, v in sorted(rows.items()))
    caption = f"<caption>{_e(title)}</caption>" if title else ""
    return f"<table>{caption}{body}</table>"


def _read_text(path: str, limit: int) -> Optional[str]:
    if os.path.getsize(path) > limit:
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _markdown(text: str) -> str:
    try:
        import markdown  # installed with tensorboard; plain <pre> otherwise
    except ImportError:
        return f"<pre>{_e(text)}</pre>"
    return markdown.markdown(text, extensions=["tables", "fenced_code"])


def _image(path: str, alt: str) -> str:
    if os.path.getsize(path) > MAX_IMAGE_BYTES:
        return f'<p class="muted">{_e(alt)}: image of {os.path.getsize(path):,} bytes not inlined ({_e(path)})</p>'
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _iframe(text: str, title: str) -> str:
    # sandboxed: a report's scripts run in an opaque origin and cannot touch this page
    return f'<iframe title="{_e(title)}" sandbox="allow-scripts" srcdoc="{_e(text)}"></iframe>'


def _render_file(path: str, kind: str, label: str) -> str:
    if kind == "image":
        return _image(path, label)
    limit = MAX_REPORT_BYTES if kind in ("html", "markdown") else MAX_TEXT_BYTES
    text = _read_text(path, limit) if kind in ("html", "markdown", "json", "text") else None
    if text is None:
        return f'<p class="muted">{os.path.getsize(path):,} bytes at {_e(path)}</p>'
    if kind == "html":
        return _iframe(text, label)
    if kind == "markdown":
        return f'<div class="md">{_markdown(text)}</div>'
    if kind == "json":
        return f"<pre>{_e(json.dumps(json.loads(text), indent=2, sort_keys=True))}</pre>"
    return f"<pre>{_e(text)}</pre>"


def _digest(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _render_folder(path: str, label: str, shown_reports: frozenset = frozenset()) -> str:
    """A Model/Dataset folder: its files with sizes; its PNG plots and HTML/Markdown reports inlined
    (a report identical to one of the step's own artifacts, `shown_reports` by digest, is not repeated)."""
    files = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        files += [os.path.join(folder, n) for n in sorted(names)]
    rows = "".join(f"<tr><td>{_e(os.path.relpath(f, path))}</td><td class='num'>{os.path.getsize(f):,}</td></tr>"
                   for f in files[:MAX_FOLDER_LISTING])
    more = f'<p class="muted">... and {len(files) - MAX_FOLDER_LISTING} more files</p>' \
        if len(files) > MAX_FOLDER_LISTING else ""
    parts = [f"<details><summary>{len(files)} files</summary><table><tr><th>file</th><th>bytes</th></tr>"
             f"{rows}</table>{more}</details>"]
    shown = 0
    for f in files:
        kind = _sniff(f, os.path.basename(f), {})
        lowered = f.lower()
        if kind == "image" and shown < MAX_IMAGES_PER_FOLDER:
            parts.append(f"<h4>{_e(os.path.relpath(f, path))}</h4>{_image(f, label)}")
            shown += 1
        elif kind in ("html", "markdown") and lowered.endswith((".html", ".htm", ".md")) \
                and os.path.getsize(f) <= MAX_REPORT_BYTES and _digest(f) not in shown_reports:
            parts.append(f"<h4>{_e(os.path.relpath(f, path))}</h4>{_render_file(f, kind, label)}")
    return "".join(parts)


def _render_artifact(artifact: ArtifactView, shown_reports: frozenset = frozenset()) -> str:
    if artifact.kind == "metrics":
        return ""  # shown in the step's metrics table
    title = f"<h3>{_e(artifact.name)} <span class='muted'>{_e(artifact.kind)}</span></h3>"
    other_metadata = {k: v for k, v in artifact.metadata.items() if k != "display_name"}
    meta = _table(other_metadata) if other_metadata else ""
    if artifact.kind == "missing":
        body = '<p class="muted">no file written</p>'
    elif artifact.kind == "folder":
        body = _render_folder(artifact.path, artifact.name, shown_reports)
    else:
        body = _render_file(artifact.path, artifact.kind, artifact.name)
    return f'<div class="artifact">{title}{meta}{body}</div>'


def _anchor(task_name: str) -> str:
    return "step-" + re.sub(r"[^a-zA-Z0-9]+", "-", task_name).strip("-")


def _render_task(task: TaskView) -> str:
    when = (datetime.datetime.fromtimestamp(task.finished).strftime("%H:%M:%S") if task.finished
            else "no outputs (failed or not run)")
    parts = [f'<section class="step" id="{_anchor(task.name)}"><h2>{_e(task.name)}</h2>'
             f'<p class="muted">finished {when} &middot; {_e(task.folder)}</p>']
    if task.metrics:
        parts.append(_table(task.metrics, "Metrics"))
    if task.parameters:
        parts.append(_table(task.parameters, "Output parameters"))
    reports = frozenset(_digest(a.path) for a in task.artifacts
                        if a.kind in ("html", "markdown") and os.path.isfile(a.path))
    parts += [_render_artifact(a, reports) for a in task.artifacts]
    parts.append("</section>")
    return "".join(parts)


def not_run(tasks: list, shape: Optional[PipelineShape]) -> list:
    """Steps of the compiled pipeline with no folder in the run (skipped by a condition, or never
    reached after a failure)."""
    if shape is None:
        return []
    ran = {_base_name(t.name) for t in tasks}
    return [step for step in shape.steps if step not in ran]


def _summary(tasks: list, skipped: list) -> str:
    rows = []
    for t in tasks:
        headline = ", ".join(f"{k}={_fmt(v)}" for k, v in list(sorted(t.metrics.items()))[:4])
        status = "ok" if t.finished else "no outputs"
        rows.append(f'<tr><td><a href="#{_anchor(t.name)}">{_e(t.name)}</a></td><td>{status}</td>'
                    f"<td>{len(t.artifacts)}</td><td>{_e(headline)}</td></tr>")
    rows += [f'<tr class="skipped"><td>{_e(step)}</td><td>not run</td><td>0</td><td></td></tr>' for step in skipped]
    return ("<table><tr><th>step</th><th>status</th><th>artifacts</th><th>metrics (first 4)</th></tr>"
            + "".join(rows) + "</table>")


def _banner(decision: Decision) -> str:
    detail = {
        "PROMOTED": f"the candidate became the champion (promoted by {decision.promoted_by})"
                    + (f": {decision.champion}" if decision.champion else ""),
        "HOLD": f"the champion is unchanged ({decision.decided_by} decided to hold)",
        "PROMOTE (not run)": f"{decision.decided_by} decided to promote, but no promote step ran: "
                             "the champion is unchanged",
        "UNKNOWN": "no step output a decision (the run stopped before shadow evaluation?)",
    }[decision.verdict]
    reasons = "".join(f"<li>{_e(r)}</li>" for r in decision.reasons)
    css = decision.verdict.replace(" (not run)", "-not-run")
    return (f'<div class="banner {css}" id="decision">Decision: {_e(decision.verdict)}'
            f"<small>{_e(detail)}</small>{f'<ul>{reasons}</ul>' if reasons else ''}</div>")


def render_report(run_dir: str, tasks: list, shape: Optional[PipelineShape] = None) -> str:
    """The page as a string (see build_report)."""
    base = os.path.basename(os.path.normpath(run_dir))
    match = _RUN_NAME.match(base)
    pipeline, started = (match.group("pipeline"), match.group("stamp")) if match else (base, "")
    decision = find_decision(tasks)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(pipeline)} run {_e(started)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{_e(pipeline)}</h1><p>local run {_e(started)} &middot; {len(tasks)} steps &middot; "
            f"{_e(os.path.abspath(run_dir))}</p></header><main>{_banner(decision)}<h2>Steps</h2>{_summary(tasks, not_run(tasks, shape))}"
            + "".join(_render_task(t) for t in tasks) + "</main></body></html>")


def build_report(run_dir: str, out_path: str, package_path: Optional[str] = None) -> str:
    """Write one self-contained HTML page for the kfp.local run in `run_dir` (a
    `<pipeline>-<timestamp>` folder; a pipeline root picks its newest run) to `out_path`; returns
    `out_path`. With the compiled pipeline (`package_path`), steps that did not run are listed and
    artifact types come from the IR instead of content sniffing."""
    if os.path.isdir(run_dir) and not _RUN_NAME.match(os.path.basename(os.path.normpath(run_dir))) \
            and not os.path.exists(os.path.join(run_dir, EXECUTOR_OUTPUT)):
        try:
            run_dir = latest_run_dir(run_dir)
        except InputError:
            pass  # not a pipeline root either: read it as a run folder and report that
    shape = read_pipeline_shape(package_path) if package_path else None
    page = render_report(run_dir, read_run(run_dir, shape), shape)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, out_path)
    return out_path
