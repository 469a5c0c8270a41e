"""The whole retraining DAG through kfp.local on tiny built-in data: every step does its real job
(Beam DirectRunner, torchrun training, scipy fits, shadow replay, compare-and-swap promotion), and the
second run compares against the first run's champion."""
import json
import os
import subprocess
import sys

import pytest

from genrec.registry import Registry
from genrec.synth import SynthConfig, generate, write

TINY = SynthConfig(users=160, titles=120, events_per_user=25, days=30, seed=11)
FAST = {"train_preset": "50K", "train_steps": 40, "sweep_presets": ["50K", "200K", "500K"], "sweep_steps": 15,
        "encoder": "hashing", "max_len": 50}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    write(generate(TINY), str(root / "data"))
    return root


def test_two_runs_promote_then_compare_against_champion(tiny_data, tmp_path, monkeypatch):
    from pipelines.local import run_local

    scratch = tmp_path / "tmp"  # the steps' own temporary files (kfp.local runs them as subprocesses)
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    registry = str(tiny_data / "registry")
    args = {"events_uri": str(tiny_data / "data"), "registry_uri": registry, **FAST}
    first = run_local(args, str(tiny_data / "runs"))
    tasks = set(first["artifacts"])
    assert {"extract-sequences", "embed-metadata", "diagnose-scaling", "shadow-eval"} <= tasks
    assert any(t.startswith("train") for t in tasks)
    evaluation = first["evaluation"]
    assert evaluation["decision"] in ("promote", "hold")
    assert "popularity" in evaluation["baseline"].lower()  # first run: no champion yet
    scaling = json.load(open(first["artifacts"]["diagnose-scaling"]["fits"]))
    assert scaling  # one fit (or an insufficient-data verdict with a reason) per task
    champion = Registry(registry).champion()
    if evaluation["decision"] == "promote":
        assert champion is not None and "promote" in first["artifacts"]
        assert os.path.exists(os.path.join(champion["model_uri"], "model.safetensors"))
    else:
        assert champion is None and "promote" not in first["artifacts"]

    second = run_local(args, str(tiny_data / "runs"))
    if champion is not None:
        assert "popularity" not in second["evaluation"]["baseline"].lower()
    # the steps' scratch (kfp.local's code folders, Beam's and torchrun's temp folders, the report
    # steps' reports) goes with the run: their outputs live on only in the artifacts
    assert not [p.name for p in scratch.iterdir()]


def test_bad_input_is_one_line_error_and_no_champion_change(tmp_path):
    (tmp_path / "events.csv").write_text("user_id,timestamp\nu1,5\n")  # no item_id column
    registry = tmp_path / "registry"
    proc = subprocess.run(
        [sys.executable, "-m", "genrec.cli", "run", "--events", str(tmp_path), "--registry", str(registry),
         "--workdir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("genrec: error:") and "events.csv" in last and "item_id" in last
    assert "Traceback" not in proc.stderr.split("genrec: error:")[-1]
    assert Registry(str(registry)).champion() is None
