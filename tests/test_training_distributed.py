"""Real torchrun (gloo on CPU): 2 processes match 1, and a SIGKILLed run resumes exactly."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from genrec.checkpoints import checkpoint_paths
from genrec.training import TrainConfig, launch_training

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "testdata", "model"))
from seqfixtures import write_sequences  # noqa: E402


def test_two_processes_match_one_with_the_same_global_batch_ddp_and_fsdp(tmp_path):
    # 8 windows alternating between two different users: with a full-data batch, one process sees
    # 4A+4B, and under gloo rank 0 sees only A and rank 1 only B, so a missing gradient all-reduce
    # would show as a different loss.
    data = write_sequences(str(tmp_path / "seq"), users=8, shards=1, length=15, identical_pairs=True)
    cfg = TrainConfig(preset="50K", max_steps=10, batch_size=8, max_len=16, loss="full", dropout=0.0,
                      mask_prob=0.0, checkpoint_every=0, warmup_steps=2, num_threads=1, optimizer="adamw")
    one = launch_training(data, str(tmp_path / "one"), cfg, nproc=1)
    two = launch_training(data, str(tmp_path / "two"), cfg, nproc=2)
    # stated tolerance: float32 reductions in a different order, 1e-5 relative
    assert two["final_train_loss"] == pytest.approx(one["final_train_loss"], rel=1e-5)
    for task in one["tasks"]:
        assert two["tasks"][task]["loss"] == pytest.approx(one["tasks"][task]["loss"], rel=1e-5)
    assert two["tokens"] == one["tokens"]
    # the same with FSDP (parameters sharded across the two processes, full weights gathered to save),
    # where optimizer "auto" is AdamW (Muon needs whole matrices)
    sharded = launch_training(data, str(tmp_path / "fsdp"), dataclasses.replace(cfg, fsdp="on", optimizer="auto"),
                              nproc=2)
    assert sharded["optimizer"] == "adamw"
    assert sharded["final_train_loss"] == pytest.approx(one["final_train_loss"], rel=1e-5)
    for task in one["tasks"]:
        assert sharded["tasks"][task]["loss"] == pytest.approx(one["tasks"][task]["loss"], rel=1e-5)
    # and with Muon under DDP ("auto" unsharded): it orthogonalises the all-reduced gradient. Stated
    # tolerance 2e-3 relative: Muon's Newton-Schulz runs in bf16 (8-bit mantissa), so a float32
    # reduction order can flip a rounding (measured 4e-4 after 10 steps); Muon and AdamW differ by far more.
    muon = dataclasses.replace(cfg, optimizer="auto")
    one_muon = launch_training(data, str(tmp_path / "one_muon"), muon, nproc=1)
    two_muon = launch_training(data, str(tmp_path / "two_muon"), muon, nproc=2)
    assert one_muon["optimizer"] == two_muon["optimizer"] == "muon"
    assert two_muon["final_train_loss"] == pytest.approx(one_muon["final_train_loss"], rel=2e-3)
    for task in one_muon["tasks"]:
        assert two_muon["tasks"][task]["loss"] == pytest.approx(one_muon["tasks"][task]["loss"], rel=2e-3)
    assert abs(one_muon["final_train_loss"] - one["final_train_loss"]) > 0.02 * one["final_train_loss"]


def test_two_processes_train_on_length_bucketed_batches_of_unequal_shares(tmp_path, monkeypatch):
    # 23 users in 2 shards: the ranks hold 12 and 11 users (24 and 22 windows of 16 and 4 events)
    # and agree on the batches per epoch before bucketing; a disagreement would hang or fail here.
    data = write_sequences(str(tmp_path / "seq"), users=23, shards=2, length=20)
    cfg = TrainConfig(preset="50K", max_steps=20, batch_size=8, max_len=16, loss="full", bucket_pool=2,
                      checkpoint_every=0, warmup_steps=2, num_threads=1)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    metrics = launch_training(data, str(tmp_path / "model"), cfg, nproc=2)
    assert metrics["steps"] == 20 and metrics["final_train_loss"] < 1e3
    assert not list(scratch.iterdir())  # torchrun's torchelastic_* folder went with the run


def test_two_processes_all_reduce_sparse_title_gradients(tmp_path):
    # The sampled loss gives the title tables sparse gradients ("auto"); DDP all-reduces them over
    # gloo. Rank 0 and rank 1 see different users, so a sparse gradient left out of the all-reduce
    # would end at a different loss than the dense run.
    data = write_sequences(str(tmp_path / "seq"), users=8, shards=1, length=15, identical_pairs=True)
    cfg = TrainConfig(preset="50K", max_steps=10, batch_size=8, max_len=16, loss="sampled", num_negatives=16,
                      dropout=0.0, mask_prob=0.0, checkpoint_every=0, warmup_steps=2, num_threads=1)
    sparse = launch_training(data, str(tmp_path / "sparse"), cfg, nproc=2)
    dense = launch_training(data, str(tmp_path / "dense"), dataclasses.replace(cfg, sparse_grads="off"), nproc=2)
    assert sparse["final_train_loss"] == pytest.approx(dense["final_train_loss"], rel=1e-5)
    for task in dense["tasks"]:
        assert sparse["tasks"][task]["loss"] == pytest.approx(dense["tasks"][task]["loss"], rel=1e-5)


def test_sigkilled_run_resumes_to_the_same_final_loss(tmp_path):
    data = write_sequences(str(tmp_path / "seq"), users=16, embedding_dim=8)
    emb = os.path.join(data, "embeddings.parquet")
    cfg = TrainConfig(preset="50K", max_steps=150, batch_size=8, max_len=16, num_negatives=16,
                      checkpoint_every=10, warmup_steps=5, num_threads=1)
    reference = launch_training(data, str(tmp_path / "ref"), cfg, embeddings_path=emb)

    out = str(tmp_path / "killed")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m",
           "genrec.training", "--data", data, "--out", out, "--config", cfg.to_json(), "--embeddings", emb]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 60
    while time.time() < deadline and not any(int(p[-12:-3]) >= 30 for p in checkpoint_paths(out)):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p[-12:-3]) for p in checkpoint_paths(out))
    assert 30 <= killed_at < 150, killed_at
    assert not os.path.exists(os.path.join(out, "metrics.json")), "run finished before it was killed"
    assert not os.path.exists(os.path.join(out, "model.safetensors"))
    for path in checkpoint_paths(out):  # every finished checkpoint loads
        assert torch.load(path, weights_only=True)["step"] % 10 == 0

    resumed = launch_training(data, out, cfg, embeddings_path=emb)
    assert resumed["steps"] == reference["steps"] == 150
    assert resumed["tokens"] == reference["tokens"]
    assert abs(resumed["final_train_loss"] - reference["final_train_loss"]) < 1e-5
    for task in reference["tasks"]:
        assert abs(resumed["tasks"][task]["loss"] - reference["tasks"][task]["loss"]) < 1e-5
    assert json.load(open(os.path.join(out, "metrics.json")))["steps"] == 150


def test_a_worker_killed_by_a_signal_is_reported_with_what_it_printed(tmp_path):
    # torchrun's own report of a worker that aborted says only "Signal 6 (SIGABRT) received by PID":
    # the error names what the worker printed before it (here, a gloo abort's two lines) as well.
    from genrec.training import ERROR_MARKER, failure_message

    worker = tmp_path / "worker.py"
    worker.write_text("import os, sys\n"
                      "print(\"terminate called after throwing an instance of 'gloo::EnforceNotMet'\", file=sys.stderr)\n"
                      "print('  what():  [enforce fail at pair.cc:446] op.preamble.length <= op.nbytes', file=sys.stderr)\n"
                      "sys.stderr.flush()\n"
                      "os.abort()\n")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                           str(worker)], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode != 0
    message = failure_message(proc.stderr, "out/model", proc.returncode)
    assert message.startswith(f"out/model: torchrun exited with {proc.returncode}: terminate called")
    assert "op.preamble.length <= op.nbytes" in message and "SIGABRT" in message
    assert "Traceback" not in message  # torchrun's own stack is not what went wrong
    # a worker's GenrecError is reported as it was raised
    assert failure_message(f"noise\n{ERROR_MARKER} bad data in x\n" + proc.stderr, "m", 1) == "bad data in x"
