"""genrec.report on real kfp.local runs of a small pipeline of our own (metrics, HTML and Markdown
reports, a model folder with a PNG plot, a ParallelFor, a promote step under dsl.If), rendered in
headless Chromium when /usr/bin/chromium is there."""
import json
import os
import re
import subprocess

import pytest
from kfp import dsl, local
from kfp.dsl import HTML, Artifact, Markdown, Metrics, Model, Output

from genrec.errors import InputError
from genrec.report import build_report, find_decision, latest_run_dir, read_run

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed (apt-get install chromium)")
BASE_IMAGE = "python:3.11-slim"


@dsl.component(base_image=BASE_IMAGE)
def train_point(preset: str, model: Output[Model], metrics: Output[Metrics]):
    """Writes a model folder holding a config and a tiny PNG plot (drawn by hand: no matplotlib)."""
    import json
    import os
    import struct
    import zlib

    os.makedirs(model.path, exist_ok=True)
    with open(os.path.join(model.path, "config.json"), "w") as f:
        json.dump({"preset": preset}, f)
    width, height = 40, 20
    rows = b"".join(b"\x00" + b"".join(bytes([200 if (x + y) % 7 else 30, 90, 40]) for x in range(width))
                    for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    with open(os.path.join(model.path, "loss.png"), "wb") as f:
        f.write(png)
    metrics.log_metric("val_mrr", {"50K": 0.11, "200K": 0.17}[preset])
    model.metadata["preset"] = preset


@dsl.component(base_image=BASE_IMAGE)
def shadow(threshold: float, evaluation: Output[Artifact], metrics: Output[Metrics], report: Output[HTML],
           report_md: Output[Markdown]) -> str:
    import json

    gain = 0.3
    decision = "promote" if gain > threshold else "hold"
    reasons = [f"primary task gain {gain} {'>' if gain > threshold else '<='} threshold {threshold}"]
    with open(evaluation.path, "w") as f:
        json.dump({"decision": decision, "reasons": reasons}, f)
    with open(report.path, "w") as f:
        f.write("<!DOCTYPE html><html><body><h1>Shadow replay</h1><p>candidate beats champion</p></body></html>")
    with open(report_md.path, "w") as f:
        f.write("# Shadow summary\n\n| task | MRR |\n|---|---|\n| play | 0.42 |\n")
    metrics.log_metric("candidate_mrr", 0.42)
    metrics.log_metric("baseline_mrr", 0.12)
    return decision


@dsl.component(base_image=BASE_IMAGE)
def promote(decision: str, model_card: Output[Markdown]) -> str:
    with open(model_card.path, "w") as f:
        f.write(f"# Model card\n\nPromoted because the decision was {decision}.\n")
    return "gs://registry/models/v0007"


@dsl.pipeline(name="report-demo")
def report_demo(threshold: float):
    with dsl.ParallelFor(items=["50K", "200K"]) as preset:
        train_point(preset=preset)
    decided = shadow(threshold=threshold)
    with dsl.If(decided.outputs["Output"] == "promote", name="promote-if-winner"):
        promote(decision=decided.outputs["Output"])


def _run(root: str, threshold: float) -> str:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root, raise_on_error=True)
    report_demo(threshold=threshold)
    return latest_run_dir(root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(promote run folder, hold run folder), each a real kfp.local run."""
    base = tmp_path_factory.mktemp("kfp-local")
    return _run(str(base / "promote"), 0.1), _run(str(base / "hold"), 0.9)


@pytest.fixture(scope="module")
def promoted_page(runs, tmp_path_factory):
    path = build_report(runs[0], str(tmp_path_factory.mktemp("report") / "run.html"))
    return path, open(path).read()


def test_every_step_is_read_in_finishing_order(runs):
    tasks = read_run(runs[0])
    names = [t.name for t in tasks]
    assert sorted(n.rsplit("/", 1)[-1] for n in names) == ["promote", "shadow", "train-point", "train-point"]
    assert names.index(next(n for n in names if n.endswith("promote"))) > names.index("shadow")
    shadow_task = next(t for t in tasks if t.name == "shadow")
    assert shadow_task.metrics == {"candidate_mrr": 0.42, "baseline_mrr": 0.12}
    assert {a.name: a.kind for a in shadow_task.artifacts} == {
        "evaluation": "json", "metrics": "metrics", "report": "html", "report_md": "markdown"}
    loop = [t for t in tasks if t.name.endswith("train-point")]
    assert all("/" in t.name for t in loop)  # ParallelFor iterations keep their folder
    assert sorted(t.metrics["val_mrr"] for t in loop) == [0.11, 0.17]


def test_page_holds_metrics_reports_plots_and_the_promotion(promoted_page):
    _, page = promoted_page
    assert "Decision: PROMOTED" in page and "gs://registry/models/v0007" in page
    assert "primary task gain 0.3 &gt; threshold 0.1" in page
    for value in ("candidate_mrr", "0.42", "baseline_mrr", "0.12", "val_mrr", "0.11", "0.17"):
        assert value in page
    assert 'srcdoc="&lt;!DOCTYPE html&gt;&lt;html&gt;&lt;body&gt;&lt;h1&gt;Shadow replay' in page
    assert "<h1>Shadow summary</h1>" in page and "<td>0.42</td>" in page  # Markdown rendered, tables too
    assert "<h1>Model card</h1>" in page
    assert len(re.findall(r'<img alt="model" src="data:image/png;base64,', page)) == 2


def test_page_is_self_contained(promoted_page):
    _, page = promoted_page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "<script src" not in page


def test_hold_run_says_hold_and_promotes_nothing(runs, tmp_path):
    page = open(build_report(runs[1], str(tmp_path / "hold.html"))).read()
    assert "Decision: HOLD" in page and "the champion is unchanged" in page
    assert "threshold 0.9" in page and "Model card" not in page


def test_a_pipeline_root_reports_its_newest_run(runs, tmp_path):
    root = os.path.dirname(runs[0])
    page = open(build_report(root, str(tmp_path / "newest.html"))).read()
    assert os.path.basename(runs[0]) in page


def _fake_task(folder, parameters, artifacts=None):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "executor_output.json"), "w") as f:
        json.dump({"parameterValues": parameters, "artifacts": artifacts or {}}, f)


def test_a_promote_decision_without_a_promote_step_is_flagged(tmp_path):
    """The shape kfp.local 2.17 leaves when a dsl.If on a NamedTuple output is skipped."""
    run = tmp_path / "genrec-retraining-2026-11-23-10-00-00-000001"
    _fake_task(str(run / "shadow-eval"), {"decision": "promote"})
    os.makedirs(run / "train")  # a task that wrote nothing
    tasks = read_run(str(run))
    assert [t.name for t in tasks] == ["shadow-eval", "train"] and tasks[1].finished is None
    decision = find_decision(tasks)
    assert decision.verdict == "PROMOTE (not run)" and decision.decided_by == "shadow-eval"
    page = open(build_report(str(run), str(tmp_path / "r.html"))).read()
    assert "no promote step ran" in page and "no outputs (failed or not run)" in page


def test_bad_folders_name_the_path(tmp_path):
    with pytest.raises(InputError, match="no-such-run"):
        build_report(str(tmp_path / "no-such-run"), str(tmp_path / "r.html"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty.*no task outputs"):
        build_report(str(tmp_path / "empty"), str(tmp_path / "r.html"))


def _chromium(*args, timeout=90):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--no-first-run", *args], capture_output=True, text=True, timeout=timeout)


@needs_chromium
def test_chromium_renders_the_page(promoted_page, tmp_path):
    path, _ = promoted_page
    out = _chromium(f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"file://{path}")
    assert out.returncode == 0, out.stderr[-1500:]
    dom = out.stdout
    assert re.search(r'<div class="banner PROMOTED" id="decision">Decision: PROMOTED', dom)
    assert dom.count('<section class="step"') == 4
    assert "<iframe" in dom and 'src="data:image/png;base64,' in dom


@needs_chromium
def test_chromium_screenshot_is_not_blank(promoted_page, tmp_path):
    from matplotlib.image import imread

    path, _ = promoted_page
    shot = tmp_path / "shot.png"
    out = _chromium(f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600", f"--screenshot={shot}",
                    f"file://{path}")
    assert out.returncode == 0 and shot.exists(), out.stderr[-1500:]
    pixels = imread(str(shot))
    assert pixels.shape[0] == 1600 and pixels.shape[1] == 1200
    assert pixels[..., :3].std() > 0.05  # a rendered page, not a blank canvas


def test_with_the_compiled_pipeline_skipped_steps_are_listed(runs, tmp_path):
    from kfp import compiler

    from genrec.report import read_pipeline_shape

    package = str(tmp_path / "report_demo.yaml")
    compiler.Compiler().compile(report_demo, package_path=package)
    shape = read_pipeline_shape(package)
    assert sorted(shape.steps) == ["promote", "shadow", "train-point"]
    assert shape.output_kinds[("shadow", "metrics")] == "metrics"
    assert shape.output_kinds[("shadow", "report")] == "html" and shape.output_kinds[("promote", "model_card")] == "markdown"
    hold = open(build_report(runs[1], str(tmp_path / "hold.html"), package_path=package)).read()
    assert '<tr class="skipped"><td>promote</td><td>not run</td>' in hold
    promoted = open(build_report(runs[0], str(tmp_path / "promoted.html"), package_path=package)).read()
    assert 'class="skipped"' not in promoted.split("</style>", 1)[1]
    with pytest.raises(InputError, match="values.yaml: not a compiled KFP pipeline"):
        (tmp_path / "values.yaml").write_text("a: 1\n")
        build_report(runs[0], str(tmp_path / "x.html"), package_path=str(tmp_path / "values.yaml"))


def test_folder_reports_are_not_repeated_and_whole_floats_stay_whole(tmp_path):
    run = tmp_path / "genrec-retraining-2026-11-23-10-00-00-000001"
    task = run / "extract-sequences"
    (task / "sequences").mkdir(parents=True)
    page_html = "<html><body><h1>Sequence extraction</h1></body></html>"
    (task / "summary").write_text(page_html)
    (task / "sequences" / "summary.html").write_text(page_html)  # the same page, kept beside the data
    (task / "sequences" / "other.html").write_text("<html><body><h1>Other</h1></body></html>")
    _fake_task(str(task), {}, {
        "summary": {"artifacts": [{"name": "summary", "uri": str(task / "summary"), "metadata": {}}]},
        "sequences": {"artifacts": [{"name": "sequences", "uri": str(task / "sequences"), "metadata": {}}]},
        "metrics": {"artifacts": [{"name": "metrics", "metadata": {"end": 1767225600.0, "mrr": 0.1234567}}]},
    })
    page = open(build_report(str(run), str(tmp_path / "r.html"))).read()
    assert page.count("<iframe") == 2 and "&lt;h1&gt;Other" in page
    assert ">1767225600<" in page and ">0.123457<" in page
