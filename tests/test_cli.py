"""The `genrec` command: steps usable alone on local paths; user errors are one line, no traceback."""
import json
import subprocess
import sys

import pyarrow.parquet as pq
from click.testing import CliRunner

from genrec.cli import cli


def _genrec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genrec.cli", *args], capture_output=True, text=True, timeout=300)


def test_synth_then_extract_then_embed_on_local_paths(tmp_path):
    runner = CliRunner()
    out = runner.invoke(cli, ["synth", "--out", str(tmp_path / "data"), "--users", "40", "--titles", "40", "--days", "20"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["events"] == pq.read_metadata(tmp_path / "data" / "events.parquet").num_rows
    out = runner.invoke(cli, ["extract", "--events", str(tmp_path / "data"), "--out", str(tmp_path / "seq")])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output[out.output.index("{"):])["users"]["all"] == 40
    out = runner.invoke(cli, ["embed", "--sequences", str(tmp_path / "seq"), "--out", str(tmp_path / "e.parquet"),
                              "--encoder", "hashing"])
    assert out.exit_code == 0, out.output
    assert pq.read_metadata(tmp_path / "e.parquet").num_rows == 40
    out = runner.invoke(cli, ["train", "--sequences", str(tmp_path / "seq"), "--embeddings", str(tmp_path / "e.parquet"),
                              "--out", str(tmp_path / "model"), "--preset", "50K", "--steps", "2",
                              "--cold-start-days", "3.5", "--tower-combine", "fallback", "--optimizer", "muon",
                              "--config", '{"lr": 0.001, "sparse_grads": "off"}'])
    assert out.exit_code == 0, out.output
    card = json.load(open(tmp_path / "model" / "config.json"))
    assert card["train"]["mask_new_days"] == 3.5 and card["train"]["max_steps"] == 2
    assert card["train"]["lr"] == 0.001 and card["train"]["sparse_grads"] == "off"
    assert card["train"]["tower_combine"] == card["model"]["tower_combine"] == "fallback"
    assert card["train"]["optimizer"] == "muon"
    for bad, said in (('{"lrr": 0.1}', "lrr"), ("[1]", "JSON object"), ("{lr: 1}", "not JSON")):
        out = runner.invoke(cli, ["train", "--sequences", str(tmp_path / "seq"), "--out", str(tmp_path / "m2"),
                                  "--config", bad])
        assert out.exit_code == 2 and said in out.output and "--config" in out.output, out.output
    assert not (tmp_path / "m2").exists()
    members = _genrec("train", "--sequences", str(tmp_path / "seq"), "--out", str(tmp_path / "m3"), "--members", "0")
    assert members.returncode != 0 and "Traceback" not in members.stderr
    assert "members 0 must be >= 1" in members.stderr.strip().splitlines()[-1]


def test_champion_on_empty_registry(tmp_path):
    out = CliRunner().invoke(cli, ["champion", "--registry", str(tmp_path / "reg")])
    assert out.exit_code == 0 and "no champion" in out.output


def test_unreadable_and_missing_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "events.csv").write_bytes(b"\x00\x01garbage")
    missing = _genrec("extract", "--events", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert missing.returncode != 0
    line = missing.stderr.strip().splitlines()[-1]
    assert line.startswith("genrec: error:") and "nope" in line and "Traceback" not in missing.stderr
    promote = _genrec("promote", "--registry", str(tmp_path / "reg"), "--candidate", str(tmp_path / "m"),
                      "--evaluation", str(tmp_path / "missing.json"))
    assert promote.returncode != 0 and "Traceback" not in promote.stderr
    assert promote.stderr.strip().splitlines()[-1].startswith("genrec: error:")
