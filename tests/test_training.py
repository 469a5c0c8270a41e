"""Trainer in one process: outputs, NaN handling, warm start, checkpoints, the Recommender view."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from genrec.checkpoints import checkpoint_paths, load_latest_checkpoint, write_atomic
from genrec.data import read_vocabulary
from genrec.errors import ConfigError, TrainingError
from genrec.events import NEVER, NUM_RESERVED
from genrec.recommender import History
from genrec.training import TrainConfig, Trainer, load_recommender

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "testdata", "model"))
from seqfixtures import write_sequences  # noqa: E402

TINY = TrainConfig(preset="50K", max_steps=40, batch_size=16, max_len=16, loss="sampled", sampler="in-batch+uniform",
                   num_negatives=32, mtp_depth=2, mask_prob=0.1, dropout=0.1, checkpoint_every=20,
                   warmup_steps=5, num_threads=1)


def run(data_dir, out_dir, config=TINY, **kw):
    trainer = Trainer(data_dir, str(out_dir), config, **kw)
    try:
        trainer.setup()
        return trainer, trainer.run()
    finally:
        trainer.cleanup()


@pytest.fixture(scope="module")
def seq_dir(tmp_path_factory):
    return write_sequences(str(tmp_path_factory.mktemp("seq")), embedding_dim=8, extra_titles=3)


@pytest.fixture(scope="module")
def trained(seq_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    _, metrics = run(seq_dir, out, embeddings_path=os.path.join(seq_dir, "embeddings.parquet"))
    return str(out), metrics


def test_model_folder_contract(trained):
    out, metrics = trained
    for name in ("model.safetensors", "config.json", "vocabulary.parquet", "metrics.json",
                 "validation_per_user.parquet", "tensorboard", "checkpoints"):
        assert os.path.exists(os.path.join(out, name)), name
    on_disk = json.load(open(os.path.join(out, "metrics.json")))
    assert on_disk == json.loads(json.dumps(metrics))
    assert metrics["preset"] == "50K" and metrics["steps"] == 40 and metrics["num_params"] == 50880
    assert metrics["tokens"] > 0 and metrics["train_seconds"] > 0
    assert set(metrics["tasks"]) == {"like", "play"}
    for m in metrics["tasks"].values():
        assert set(m) >= {"mrr", "recall@10", "ndcg@10", "loss", "n"} and m["n"] > 0
    per_user = pq.read_table(os.path.join(out, "validation_per_user.parquet"))
    assert per_user.column_names == ["user_id", "task", "mrr", "loss", "n"]
    card = json.load(open(os.path.join(out, "config.json")))
    assert card["tasks"] == ["like", "play"] and card["mtp_depth"] == 2
    assert card["vocabulary_fingerprint"] == read_vocabulary(out).fingerprint
    assert "sampled-softmax" in card["loss"] and card["sampler"].startswith("in-batch")
    # optimizer "auto" (the default): the card and the metrics name what it resolved to, not "auto"
    assert TINY.optimizer == "auto" and card["train"]["optimizer"] == metrics["optimizer"] == "muon"
    assert not any(p.endswith(".tmp") or ".tmp-" in p for p in os.listdir(os.path.join(out, "checkpoints")))


def test_training_beats_popularity_on_a_learnable_pattern(trained):
    out, metrics = trained
    # popularity would rank every target among 40 near-uniform titles: MRR about 0.1
    assert metrics["tasks"]["play"]["mrr"] > 0.3


def test_nan_loss_raises_training_error_and_writes_no_model(seq_dir, tmp_path):
    bad = TrainConfig(preset="50K", max_steps=30, batch_size=16, max_len=16, lr=1e12, normalize=False,
                      grad_clip=1e30, warmup_steps=1, checkpoint_every=0, num_threads=1)
    with pytest.raises(TrainingError, match="loss became"):
        run(seq_dir, tmp_path, bad)
    assert not os.path.exists(tmp_path / "model.safetensors")
    assert not os.path.exists(tmp_path / "metrics.json")


def test_warm_start_keeps_known_titles_bit_identical(trained, seq_dir, tmp_path):
    old_dir, _ = trained
    new_data = write_sequences(str(tmp_path / "seq"), embedding_dim=8, n_items=50, seed=1)
    trainer = Trainer(new_data, str(tmp_path / "out"), TINY,
                      embeddings_path=os.path.join(new_data, "embeddings.parquet"), warm_start_dir=old_dir)
    try:
        trainer.setup()
        old = load_file(os.path.join(old_dir, "model.safetensors"))
        old_vocab, new_vocab = read_vocabulary(old_dir), trainer.vocab
        new_rows = trainer.model.tower.id_embedding.weight.detach()
        both = [i for i in new_vocab.item_ids[NUM_RESERVED:] if i in set(old_vocab.item_ids)]
        new_only = [i for i in new_vocab.item_ids[NUM_RESERVED:] if i not in set(old_vocab.item_ids)]
        assert both and new_only
        a, b = new_vocab.positions(both), old_vocab.positions(both)
        assert torch.equal(new_rows[a], old["tower.id_embedding.weight"][b])
        assert torch.all(new_rows[new_vocab.positions(new_only)] == 0)  # new titles: semantic tower only
        new_bias = trainer.model.tower.bias.weight.detach()
        assert torch.equal(new_bias[a], old["tower.bias.weight"][b])  # biases follow their titles
        assert torch.all(new_bias[new_vocab.positions(new_only)] == 0)  # new titles: a fresh bias
        assert torch.equal(trainer.model.blocks[0].attn.c_attn.weight.detach(), old["blocks.0.attn.c_attn.weight"])
        assert trainer.warm_info["reused_items"] == len(both) and trainer.warm_info["new_items"] == len(new_only)
    finally:
        trainer.cleanup()


def test_models_saved_before_residual_mtp_heads_load_and_warm_start_as_they_were(trained, seq_dir, tmp_path):
    from genrec.model.serving import load_model

    old_dir, _ = trained
    assert load_model(old_dir)[0].config.mtp_residual  # the default since it existed
    legacy = tmp_path / "legacy"
    shutil.copytree(old_dir, legacy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    card = json.load(open(legacy / "config.json"))
    del card["model"]["mtp_residual"]
    (legacy / "config.json").write_text(json.dumps(card))
    assert not load_model(str(legacy))[0].config.mtp_residual  # its heads keep their meaning
    trainer = Trainer(seq_dir, str(tmp_path / "out"), TINY, embeddings_path=os.path.join(seq_dir, "embeddings.parquet"),
                      warm_start_dir=str(legacy))
    try:
        trainer.setup()
        old = load_file(os.path.join(old_dir, "model.safetensors"))
        assert not torch.equal(trainer.model.head.weight.detach(), old["head.weight"])  # not reinterpreted
        assert torch.equal(trainer.model.blocks[0].attn.c_attn.weight.detach(), old["blocks.0.attn.c_attn.weight"])
    finally:
        trainer.cleanup()


def test_recommender_scores_known_and_unseen_titles(trained, seq_dir):
    out, _ = trained
    rec = load_recommender(out, os.path.join(seq_dir, "embeddings.parquet"))
    assert rec.tasks == ("like", "play") and rec.description.startswith("genrec-50K")
    catalog = [f"t{i:04d}" for i in range(43)]  # 40 trained titles + 3 never seen in training
    rec.set_catalog(catalog)
    history = History(items=["t0001", "t0002", "t0003"], event_types=["play"] * 3, timestamps=[0, 60, 120])
    scores = rec.score([history, History([], [], [])], "play", delay=0)
    assert scores.shape == (2, 43) and scores.dtype == np.float32 and np.isfinite(scores).all()
    assert len(np.unique(scores[0, 40:])) == 3  # unseen titles differ by their metadata
    # delay beyond the MTP depth uses the last head, so delay 2 and 9 agree and differ from 0
    far = rec.score([history], "play", delay=9)
    assert np.allclose(far, rec.score([history], "play", delay=2))
    assert not np.allclose(far, scores[:1])
    # ranks the true next title (stride-1 walk) near the top
    assert (scores[0] > scores[0, 4]).sum() < 5
    with pytest.raises(ConfigError):
        rec.score([history], "purchase")
    top, top_scores = rec.recommend([history], "play", k=5)
    assert top.shape == (1, 5) and not {1, 2, 3} & set(top[0].tolist())  # seen titles filtered
    assert np.allclose(top_scores[0], np.sort(np.delete(scores[0], [1, 2, 3]))[::-1][:5], atol=1e-5)


def test_checkpoints_resume_and_skip_corrupt_files(trained, tmp_path):
    out, _ = trained
    paths = checkpoint_paths(out)
    assert [os.path.basename(p) for p in paths] == ["step_000000020.pt", "step_000000040.pt"]
    state = load_latest_checkpoint(out)
    assert state["step"] == 40 and set(state) >= {"model", "optimizer", "scheduler", "rng", "tokens"}
    os.makedirs(tmp_path / "checkpoints")
    write_atomic({"step": 1}, str(tmp_path / "checkpoints" / "step_000000001.pt"))
    with open(tmp_path / "checkpoints" / "step_000000002.pt", "wb") as fh:
        fh.write(b"truncated")
    assert load_latest_checkpoint(str(tmp_path))["step"] == 1


def test_time_budget_fixes_the_step_count_from_measured_speed(seq_dir):
    trainer = Trainer(seq_dir, "unused", TrainConfig(max_steps=10_000, max_seconds=10.0))
    trainer.ctx = type("Ctx", (), {"distributed": False})()
    trainer.total_steps, trainer.step, trainer.train_seconds = 10_000, 20, 2.0  # 0.1 s per step so far
    trainer.fit_budget()
    assert trainer.total_steps == 20 + 80  # the 8 s left hold 80 more steps
    trainer.step, trainer.train_seconds = 100, 6.0  # the 80 steps since ran at 0.05 s each
    trainer.fit_budget()
    assert trainer.total_steps == 100 + 80  # refitted from the recent speed: the 4 s left hold 80 more
    trainer.step, trainer.train_seconds = 150, 7.5  # 50 more steps at 0.03 s: 0.042 s/step since step 20
    trainer.fit_budget()
    assert trainer.total_steps == 150 + int(2.5 / (5.5 / 130))  # the mean since the first fit, not the last stretch
    from genrec.training import budget_fit_due
    assert [s for s in range(1, 2600) if budget_fit_due(s)] == [20, 100, 400, 1000, 1500, 2000, 2500]
    trainer.calibrated_at, trainer.step_cap, trainer.train_seconds = (0, 0.0), 50, 2.0
    trainer.step = 20
    trainer.fit_budget()
    assert trainer.total_steps == 50  # never more than max_steps (or what max_tokens allows)


def test_spent_time_budget_ends_the_run_after_calibration_with_the_schedule_finished(seq_dir, tmp_path):
    from genrec.training import BUDGET_CALIBRATION_STEPS

    cfg = TrainConfig(preset="50K", max_steps=10_000, max_seconds=1e-9, batch_size=8, max_len=16, loss="full",
                      checkpoint_every=0, warmup_steps=2, num_threads=1)
    trainer, metrics = run(seq_dir, tmp_path / "m", cfg)
    assert metrics["steps"] == BUDGET_CALIBRATION_STEPS
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(cfg.lr * cfg.min_lr_ratio)
    with pytest.raises(ConfigError, match="max_seconds"):
        TrainConfig(max_seconds=-1)


def test_new_title_masking_scores_early_events_of_a_launch_from_metadata(tmp_path):
    seq = write_sequences(str(tmp_path / "seq"), embedding_dim=8)
    vocab_path = os.path.join(seq, "vocabulary.parquet")
    vocab = pq.read_table(vocab_path)
    launched = [1_700_020_000 if i % 2 else 1_700_000_000 for i in range(vocab.num_rows)]  # odd titles launch late
    pq.write_table(vocab.set_column(vocab.column_names.index("first_seen"), "first_seen",
                                    pa.array(launched, pa.int64())), vocab_path)
    config = dataclasses.replace(TINY, mask_new_days=0.2, mask_prob=0.0, mtp_depth=0, max_steps=3)
    trainer = Trainer(seq, str(tmp_path / "model"), config, embeddings_path=os.path.join(seq, "embeddings.parquet"))
    try:
        trainer.setup()
        launch = trainer.step_module.launch
        assert (launch != NEVER).any() and (launch == NEVER).any()
        items, types, gaps, targets, target_times = trainer._batch(0, 0)
        with torch.no_grad():
            masked = trainer.step_module(items, types, gaps, targets, None, None, target_times)[0]
            plain = trainer.step_module(items, types, gaps, targets, None, None, None)[0]
        assert not torch.isclose(masked, plain)
        assert np.isfinite(trainer.run()["tasks"]["play"]["mrr"])
    finally:
        trainer.cleanup()


@pytest.mark.parametrize("detach", [False, True])
def test_detached_mtp_heads_learn_without_training_the_backbone(detach):
    from genrec.model import FullSoftmaxLoss, GenerativeRecommender, ModelConfig
    from genrec.training import TrainingStep

    torch.manual_seed(0)
    model = GenerativeRecommender(ModelConfig(n_layer=1, n_head=2, n_embd=16, max_len=8, num_items=20, num_tasks=1,
                                              mtp_depth=1, item_dim=8))
    torch.nn.init.normal_(model.head.weight, std=0.02)  # residual delay heads start at zero: no backbone gradient yet
    step = TrainingStep(model, FullSoftmaxLoss(), mtp_decay=0.5, mtp_detach=detach)
    items = torch.randint(NUM_RESERVED, 20, (2, 8))
    targets = torch.zeros(2, 2, 8, dtype=torch.long)
    targets[:, 1] = torch.randint(NUM_RESERVED, 20, (2, 8))  # only the depth-1 head has targets
    total, _ = step(items, torch.ones_like(items), torch.zeros_like(items), targets, None, None)
    total.backward()
    backbone = model.blocks[0].mlp.c_fc.weight.grad
    assert model.head.weight.grad.abs().sum() > 0  # the head always learns
    assert (backbone is None or backbone.abs().sum() == 0) == detach


RSS_AFTER_FREE = """
import sys, torch
from genrec.training import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
x = torch.ones(64, 1 << 20)  # 256 MiB, far past glibc's mmap threshold
del x
print(kept, int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_keep_freed_memory_keeps_large_freed_blocks_for_reuse():
    """Without it a freed 256 MiB tensor goes back to the OS (and the next step faults it back in)."""
    import subprocess

    def rss_mib(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", RSS_AFTER_FREE, mode], capture_output=True, text=True, check=True)
        kept, rss = out.stdout.split()
        return kept, int(rss)

    (_, plain), (kept, keep) = rss_mib("plain"), rss_mib("keep")
    if kept != "True":
        pytest.skip("not glibc: mallopt unavailable")
    assert keep - plain > 200, (plain, keep)


def test_length_bucketed_batches_cut_padding_without_changing_the_loss(seq_dir, tmp_path):
    config = dataclasses.replace(TINY, max_len=64, bucket_pool=2, dropout=0.0, mask_prob=0.0, max_steps=40, loss="full")
    trainer = Trainer(seq_dir, str(tmp_path / "model"), config)
    try:
        trainer.setup()
        items, types, gaps, targets, target_times = trainer._batch(0, 0)
        longest = int((items != 0).sum(dim=1).max())
        assert items.shape[1] == longest < 64  # the batch stops at its longest window
        pad = lambda t: torch.nn.functional.pad(t, (0, 64 - t.shape[-1]))
        trainer.step_module.eval()
        with torch.no_grad():
            cut = trainer.step_module(items, types, gaps, targets, None, None, target_times)
            full = trainer.step_module(pad(items), pad(types), pad(gaps), pad(targets), None, None, pad(target_times))
        assert torch.allclose(cut[0], full[0], rtol=1e-5) and torch.equal(cut[1], full[1])
        trainer.step_module.train()
        assert trainer.run()["tasks"]["play"]["mrr"] > 0.3  # learns the pattern as random batches do
    finally:
        trainer.cleanup()


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_exclude_seen_trains_with_either_loss(seq_dir, tmp_path, loss):
    config = dataclasses.replace(TINY, loss=loss, exclude_seen=True, mtp_depth=0, max_len=32)
    _, metrics = run(seq_dir, tmp_path / "model", config)
    assert metrics["tasks"]["play"]["mrr"] > 0.3  # the planted pattern is still learned



def test_training_step_passes_each_rows_history_to_the_loss():
    from genrec.model import FullSoftmaxLoss, GenerativeRecommender, ModelConfig
    from genrec.training import TrainingStep

    torch.manual_seed(0)
    model = GenerativeRecommender(ModelConfig(n_layer=1, n_head=2, n_embd=16, max_len=8, num_items=20, num_tasks=1,
                                              item_dim=8)).eval()
    items = torch.randint(NUM_RESERVED, 20, (2, 8))
    targets = torch.zeros(2, 1, 8, dtype=torch.long)
    targets[:, 0, :-1] = items[:, 1:]
    args = (items, torch.ones_like(items), torch.zeros_like(items), targets, None, None)
    with torch.no_grad():
        plain, n = TrainingStep(model, FullSoftmaxLoss(), mtp_decay=0.5)(*args)
        excluded, n2 = TrainingStep(model, FullSoftmaxLoss(), mtp_decay=0.5, exclude_seen=True)(*args)
    assert n == n2 and excluded < plain


def test_window_stride_reaches_the_training_windows(seq_dir, tmp_path):
    def windows(stride):
        trainer = Trainer(seq_dir, str(tmp_path / f"s{stride}"), dataclasses.replace(TINY, max_len=8, window_stride=stride))
        try:
            trainer.setup()
            return trainer.windows
        finally:
            trainer.cleanup()

    plain, overlapped = windows(0), windows(4)
    assert len(overlapped) > len(plain)
    assert (overlapped.targets >= NUM_RESERVED).sum() == (plain.targets >= NUM_RESERVED).sum()


def test_precision_picks_the_step_autocast_and_bf16_training_still_learns(seq_dir, tmp_path):
    from genrec.training import training_autocast

    a, b = torch.randn(4, 8), torch.randn(8, 3)
    cpu = torch.device("cpu")
    for precision, dtype in (("auto", torch.float32), ("fp32", torch.float32), ("bf16", torch.bfloat16)):
        with training_autocast(precision, cpu):
            assert (a @ b).dtype == dtype, precision
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")
    config = dataclasses.replace(TINY, precision="bf16", mtp_depth=0, mask_prob=0.0, checkpoint_every=0)
    trainer, metrics = run(seq_dir, tmp_path / "bf16", config)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # bf16 matmuls, fp32 weights
    assert metrics["tasks"]["play"]["mrr"] > 0.3


def test_sparse_title_gradients_train_the_same_weights(seq_dir, tmp_path):
    """sparse_grads only changes how the per-title tables' gradients are carried: "auto" turns it on
    for the sampled loss (off for the full softmax), and the weights after training match "off"."""
    config = dataclasses.replace(TINY, max_steps=12, mtp_depth=0, mask_prob=0.0, checkpoint_every=0, dropout=0.0)
    sparse, _ = run(seq_dir, tmp_path / "sparse", config)
    dense, _ = run(seq_dir, tmp_path / "dense", dataclasses.replace(config, sparse_grads="off"))
    assert sparse.sparse_grads and sparse.model.tower.id_embedding.sparse
    assert not dense.sparse_grads and not dense.model.tower.id_embedding.sparse
    assert sparse.last_loss == pytest.approx(dense.last_loss, rel=1e-5)
    got, want = dict(sparse.model.named_parameters()), dict(dense.model.named_parameters())
    for name in ("tower.id_embedding.weight", "tower.bias.weight", "head.weight"):
        assert torch.allclose(got[name], want[name], atol=1e-5), name
    full, _ = run(seq_dir, tmp_path / "full", dataclasses.replace(config, loss="full", max_steps=1))
    assert not full.sparse_grads
    with pytest.raises(ConfigError, match="sparse_grads"):
        TrainConfig(sparse_grads="yes")


def test_sparse_grads_stay_off_where_the_all_reduce_cannot_take_them():
    from genrec.distributed import DistContext
    from genrec.training import use_sparse_grads

    cpu, cpu2 = DistContext(0, 0, 1, torch.device("cpu")), DistContext(0, 0, 2, torch.device("cpu"))
    gpu2 = DistContext(0, 0, 2, torch.device("cuda", 0))
    sampled = TrainConfig(loss="sampled")
    assert use_sparse_grads(sampled, False, cpu) and use_sparse_grads(sampled, False, cpu2)
    assert not use_sparse_grads(TrainConfig(loss="full"), False, cpu)
    assert use_sparse_grads(TrainConfig(loss="full", sparse_grads="on"), False, cpu)
    assert not use_sparse_grads(dataclasses.replace(sampled, sparse_grads="off"), False, cpu)
    assert not use_sparse_grads(sampled, True, cpu2)  # FSDP shards: no sparse gradients
    assert not use_sparse_grads(sampled, False, gpu2)  # NCCL has no sparse all-reduce
    for ctx, sharded in ((gpu2, False), (cpu2, True)):
        with pytest.raises(ConfigError, match="sparse_grads='on'"):
            use_sparse_grads(dataclasses.replace(sampled, sparse_grads="on"), sharded, ctx)


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    from genrec.model import GenerativeRecommender, preset_config
    from genrec.training import build_optimizers

    model = GenerativeRecommender(preset_config("50K", max_len=16, num_items=20, num_tasks=2, mtp_depth=1))
    adamw_only = build_optimizers(model, TrainConfig(optimizer="adamw"))
    assert len(adamw_only) == 1 and isinstance(adamw_only[0], torch.optim.AdamW)
    # "auto" (the default) is Muon unless FSDP shards the model; an explicit "muon" there is refused.
    assert len(build_optimizers(model, TrainConfig())) == 2
    assert len(build_optimizers(model, TrainConfig(), sharded=True)) == 1
    with pytest.raises(ConfigError, match="FSDP shards"):
        build_optimizers(model, TrainConfig(optimizer="muon"), sharded=True)
    adamw, muon = build_optimizers(model, TrainConfig(optimizer="muon"))
    on_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    on_adamw = {id(p) for g in adamw.param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert not on_muon & on_adamw and on_muon | on_adamw == set(names)  # every parameter, once
    assert sorted(names[i] for i in on_muon) == sorted(
        n for n, p in model.named_parameters() if p.dim() == 2 and n.startswith(("blocks.", "head.")))
    assert "head.weight" in {names[i] for i in on_muon} and "tower.id_embedding.weight" in {names[i] for i in on_adamw}
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="FSDP shards"):
        TrainConfig(optimizer="muon", fsdp="on")


def test_muon_run_resumes_from_a_checkpoint_to_the_same_weights(seq_dir, tmp_path):
    cfg = dataclasses.replace(TINY, optimizer="muon", max_steps=20, checkpoint_every=10, keep_checkpoints=2)
    run(seq_dir, tmp_path / "whole", cfg)
    state = load_latest_checkpoint(str(tmp_path / "whole"))
    assert len(state["schedulers"]) == 2  # AdamW's and Muon's, saved with both optimizers' state
    os.makedirs(tmp_path / "resumed" / "checkpoints")
    shutil.copy(tmp_path / "whole" / "checkpoints" / "step_000000010.pt", tmp_path / "resumed" / "checkpoints")
    _, metrics = run(seq_dir, tmp_path / "resumed", cfg)
    assert metrics["steps"] == 20
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert whole.keys() == resumed.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], msg=name)
    with pytest.raises(ConfigError, match="optimizer"):  # resuming under another optimizer is refused
        run(seq_dir, tmp_path / "whole", dataclasses.replace(cfg, optimizer="adamw", max_steps=30))
    # Muon's momentum is what came back: resumed without it, the same steps end elsewhere.
    state = torch.load(tmp_path / "whole" / "checkpoints" / "step_000000010.pt", weights_only=True)
    hidden = [k for k in state["optimizer"]["state"] if k.startswith(("model.blocks.", "model.head."))]
    assert hidden
    for key in hidden:
        del state["optimizer"]["state"][key]
    os.makedirs(tmp_path / "amnesic" / "checkpoints")
    write_atomic(state, str(tmp_path / "amnesic" / "checkpoints" / "step_000000010.pt"))
    run(seq_dir, tmp_path / "amnesic", cfg)
    amnesic = load_file(str(tmp_path / "amnesic" / "model.safetensors"))
    assert not torch.allclose(amnesic["blocks.0.attn.c_attn.weight"], whole["blocks.0.attn.c_attn.weight"])
