"""Ensembles (TrainConfig.members): members scored as one model, trained as runs of their own side by
side through real torchrun, packed into one folder that loads, serves and warm-starts."""
from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np
import pytest
import torch

from genrec.errors import ConfigError
from genrec.model import GenerativeRecommender, ModelConfig
from genrec.model.ensemble import MemberEnsemble, build_model
from genrec.model.serving import load_model, load_recommender
from genrec.members import member_config, member_layout
from genrec.recommender import History
from genrec.training import TrainConfig, Trainer, launch_training

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "testdata", "model"))
from seqfixtures import write_sequences  # noqa: E402

CONFIG = ModelConfig(n_layer=1, n_head=2, n_embd=16, max_len=8, num_items=12, item_dim=8, semantic_dim=4)


def _members(n: int) -> list[GenerativeRecommender]:
    out = []
    for k in range(n):
        torch.manual_seed(k)
        m = GenerativeRecommender(CONFIG).eval()
        with torch.no_grad():
            m.tower.set_semantic(torch.randn(CONFIG.num_items, 4))
        out.append(m)
    return out


def test_ensemble_logits_are_the_mean_of_its_members_logits():
    members = _members(3)
    ensemble = MemberEnsemble(members).eval()
    items = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 10, 11, 4, 5, 6]])
    types = (items > 0).long()
    gaps = torch.ones_like(items)
    head = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        logits = ensemble.queries(ensemble(items, types, gaps)[:, 3], head) @ ensemble.item_table().T
        alone = sum(m.queries(m(items, types, gaps)[:, 3], head) @ m.item_table().T for m in members) / 3
        torch.testing.assert_close(logits, alone)
        # input vectors given from outside (serving's titles without a vocabulary row) split per member
        scored = ensemble.item_vectors(items)
        vectors = ensemble.input_vectors(scored)
        assert vectors.shape[-1] == ensemble.input_dim == 3 * CONFIG.item_dim
        torch.testing.assert_close(ensemble(items, types, gaps, vectors=vectors), ensemble(items, types, gaps))
        unknown = torch.full((2,), -1, dtype=torch.long)
        meta = torch.randn(2, 4)
        torch.testing.assert_close(ensemble.represent_items(unknown, meta),
                                   torch.cat([m.represent_items(unknown, meta) for m in members], -1))
    assert ensemble.get_num_params() == 3 * members[0].get_num_params()
    assert isinstance(build_model(CONFIG, 1), GenerativeRecommender)
    assert isinstance(build_model(CONFIG, 2), MemberEnsemble)


def test_an_ensemble_needs_two_members_of_one_config():
    with pytest.raises(ValueError, match="two members"):
        MemberEnsemble(_members(1))
    other = GenerativeRecommender(dataclasses.replace(CONFIG, n_embd=32))
    with pytest.raises(ValueError, match="one ModelConfig"):
        MemberEnsemble([_members(1)[0], other])


def test_members_split_processes_threads_and_gpus_and_get_seeds_of_their_own():
    assert member_layout(2, nproc=2, cpus=2, gpus=0) == (1, 1, [{}, {}])
    assert member_layout(2, nproc=1, cpus=2, gpus=0) == (1, 1, [{}, {}])  # at least one process each
    assert member_layout(3, nproc=1, cpus=16, gpus=0) == (1, 5, [{}, {}, {}])
    per, threads, envs = member_layout(2, nproc=8, cpus=16, gpus=8)
    assert (per, threads) == (4, 2)
    assert envs == [{"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}]
    config = TrainConfig(members=3, seed=5)
    seeds = [member_config(config, k, 1).seed for k in range(3)]
    other_run = [member_config(dataclasses.replace(config, seed=6), k, 1).seed for k in range(3)]
    assert len(set(seeds) | set(other_run)) == 6  # no member shared between runs of seeds 5 and 6
    assert all(member_config(config, k, 1).members == 1 for k in range(3))
    assert member_config(dataclasses.replace(config, num_threads=3), 0, 1).num_threads == 3


def test_members_below_one_and_ensembles_inside_one_worker_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="members 0"):
        TrainConfig(members=0)
    with pytest.raises(ConfigError, match="launch_training"):
        Trainer(str(tmp_path), str(tmp_path / "out"), TrainConfig(members=2))


def test_an_ensemble_trains_side_by_side_packs_serves_and_warm_starts(tmp_path):
    data = write_sequences(str(tmp_path / "seq"), embedding_dim=8, extra_titles=2)
    emb = os.path.join(data, "embeddings.parquet")
    cfg = TrainConfig(preset="50K", max_steps=30, batch_size=8, max_len=16, loss="full", checkpoint_every=10,
                      warmup_steps=5, members=2, seed=1)
    out = str(tmp_path / "ens")
    os.makedirs(os.path.join(out, "members", "2"))  # left by an earlier 3-member run into this folder
    metrics = launch_training(data, out, cfg, embeddings_path=emb, nproc=2)
    assert sorted(os.listdir(os.path.join(out, "members"))) == ["0", "1"]
    members = metrics["member_metrics"]  # keyed by member, so the KFP metrics artifact lists each one
    assert metrics["members"] == 2 and sorted(members) == ["0", "1"]
    assert metrics["steps"] == 60 and all(m["steps"] == 30 for m in members.values())
    assert json.load(open(os.path.join(out, "metrics.json"))) == json.loads(json.dumps(metrics))
    card = json.load(open(os.path.join(out, "config.json")))
    assert card["members"] == 2 and card["member_seeds"] == [2, 3]
    assert card["train"]["optimizer"] == metrics["optimizer"] == "muon"  # what "auto" resolved to
    for k in range(2):  # each member keeps its record, not a second copy of its weights
        member = os.path.join(out, "members", str(k))
        assert os.path.exists(os.path.join(member, "metrics.json"))
        assert not os.path.exists(os.path.join(member, "model.safetensors"))
        assert not os.path.exists(os.path.join(member, "checkpoints"))

    model, _ = load_model(out)
    assert isinstance(model, MemberEnsemble)
    a, b = model.members
    assert not torch.equal(a.blocks[0].attn.c_attn.weight, b.blocks[0].attn.c_attn.weight)
    # the packed ensemble validates better than chance, on the targets its members validated on
    play = metrics["tasks"]["play"]
    assert play["mrr"] > 0.3, play
    for member_metrics in members.values():
        assert member_metrics["tasks"]["play"]["n"] == play["n"]

    rec = load_recommender(out, emb)
    titles = ["t0001", "t0002", "t0003", "t0040"]  # the last is outside the vocabulary
    rec.set_catalog(titles)
    history = [History(["t0001", "t0040"], ["play", "play"], [100, 200])]
    scores = rec.score(history, "play")
    assert scores.shape == (1, 4) and np.isfinite(scores).all()
    idx, _ = rec.recommend(history, "play", k=2)
    assert set(idx[0]).isdisjoint({0, 3})  # seen titles filtered

    # warm start: a single model from member 1 of the ensemble, and a new ensemble member by member
    single = Trainer(data, str(tmp_path / "single"), dataclasses.replace(cfg, members=1, max_steps=0),
                     embeddings_path=emb, warm_start_dir=out, warm_start_member=1)
    try:
        single.setup()
        assert single.warm_info["member"] == 1 and single.warm_info["loaded_tensors"] > 0
        torch.testing.assert_close(single.model.blocks[0].attn.c_attn.weight, b.blocks[0].attn.c_attn.weight)
    finally:
        single.cleanup()
    again = launch_training(data, str(tmp_path / "again"), dataclasses.replace(cfg, max_steps=5), embeddings_path=emb,
                            warm_start_dir=out, nproc=2)
    assert [again["member_metrics"][k]["warm_start"]["member"] for k in ("0", "1")] == [0, 1]
    # a single model trained into the ensemble's folder leaves no members behind it
    launch_training(data, out, dataclasses.replace(cfg, members=1, max_steps=5), embeddings_path=emb)
    assert not os.path.exists(os.path.join(out, "members")) and load_model(out)[1].get("members", 1) == 1


def test_a_member_that_fails_stops_the_others_and_names_itself(tmp_path, monkeypatch):
    """Member 1's torchrun dies at start-up (a sitecustomize on its PYTHONPATH exits): member 0,
    set to train for minutes, gets SIGTERM through its torchrun at once, and the error names member
    1's own failure first and member 0 as stopped."""
    import time

    import genrec.members as members_module
    from genrec.errors import TrainingError

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "sitecustomize.py").write_text("raise SystemExit('member 1 cannot start')\n")
    layout = members_module.member_layout

    def failing_layout(*args):
        per_member, threads, envs = layout(*args)
        envs[1] = envs[1] | {"PYTHONPATH": str(broken)}
        return per_member, threads, envs

    monkeypatch.setattr(members_module, "member_layout", failing_layout)
    data = write_sequences(str(tmp_path / "seq"), embedding_dim=8, extra_titles=2)
    cfg = TrainConfig(preset="50K", max_steps=1_000_000, max_seconds=180, batch_size=8, max_len=16, loss="full",
                      members=2, checkpoint_every=0)
    started = time.monotonic()
    with pytest.raises(TrainingError) as failure:
        launch_training(data, str(tmp_path / "ens"), cfg, embeddings_path=os.path.join(data, "embeddings.parquet"),
                        nproc=2)
    assert time.monotonic() - started < 60  # unstopped, member 0 would train for its 180 s
    message = str(failure.value)
    assert message.startswith("member 1:") and "(stopped: member 0)" in message
    assert not os.path.exists(tmp_path / "ens" / "model.safetensors")
