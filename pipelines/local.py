"""Run the retraining DAG on this machine through kfp.local (SubprocessRunner, this Python environment)."""
import contextlib
import logging
import os
import tempfile
from typing import Any, Dict, Iterator

from genrec.errors import GenrecError

log = logging.getLogger(__name__)

EVALUATION_TASK, EVALUATION_OUTPUT = "shadow-eval", "evaluation"


def _artifacts(run_dir: str) -> Dict[str, Dict[str, str]]:
    """{task: {output: path}} for everything kfp.local wrote under one run."""
    found: Dict[str, Dict[str, str]] = {}
    for task in sorted(os.listdir(run_dir)):
        task_dir = os.path.join(run_dir, task)
        if os.path.isdir(task_dir):
            found[task] = {name: os.path.join(task_dir, name) for name in sorted(os.listdir(task_dir))}
    return found


@contextlib.contextmanager
def _step_scratch() -> Iterator[str]:
    """TMPDIR of the steps (subprocesses) for one run, removed after it. In a container each step's
    scratch goes with the container; here it would stay in /tmp: kfp.local's `mktemp -d` for each
    step's code, Beam's beam-temp* and torchrun's torchelastic_* folders (dozens a run)."""
    previous = os.environ.get("TMPDIR")
    with tempfile.TemporaryDirectory(prefix="genrec-steps-", dir=previous) as scratch:
        os.environ["TMPDIR"] = scratch
        try:
            yield scratch
        finally:
            if previous is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = previous


def run_local(arguments: Dict[str, Any], workdir: str) -> Dict[str, Any]:
    """Execute the pipeline with `arguments`; returns the run folder, every artifact path, the shadow
    evaluation and the champion after the run. A failed step raises GenrecError (and promotes nothing,
    since promotion is the DAG's last step)."""
    import json

    from kfp import local

    from genrec.registry import Registry
    from genrec.report import build_report
    from genrec.sequences import check_input
    from pipelines.retraining import retraining_pipeline

    # Fail fast with the real reason (file and column) instead of a failed step's status line.
    check_input(arguments["events_uri"], arguments.get("titles_uri") or None)
    # kfp.local runs independent steps (the sweep, the candidate) at the same time on this machine:
    # one math thread per step, or their thread pools fight over the cores (measured: 25x slower).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    root = os.path.abspath(workdir)
    os.makedirs(root, exist_ok=True)
    before = set(os.listdir(root))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root, raise_on_error=True)
    try:
        with _step_scratch():
            retraining_pipeline(**arguments)
    except RuntimeError as exc:
        raise GenrecError(f"pipeline run failed: {str(exc).splitlines()[0]} (see the step's log above); "
                          "the champion is unchanged") from exc
    new_runs = sorted(set(os.listdir(root)) - before)
    if not new_runs:
        raise GenrecError(f"kfp.local wrote no run folder under {root}")
    run_dir = os.path.join(root, new_runs[-1])
    artifacts = _artifacts(run_dir)
    evaluation = None
    eval_path = artifacts.get(EVALUATION_TASK, {}).get(EVALUATION_OUTPUT)
    if eval_path and os.path.isfile(eval_path):
        with open(eval_path) as f:
            evaluation = json.load(f)
    champion = Registry(arguments["registry_uri"]).champion()
    report = build_report(run_dir, os.path.join(run_dir, "report.html"))
    return {"run_dir": run_dir, "artifacts": artifacts, "evaluation": evaluation,
            "champion": (champion or {}).get("model_uri"), "report": report}
