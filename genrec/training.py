"""Training: one loop for one process or many (torchrun), with atomic checkpoints and resume.

`launch_training` is what the pipeline calls: it runs real `torchrun` in a subprocess, and each
worker runs `python -m genrec.training`, which builds a `Trainer` (setup / train / save / cleanup).
DDP is detected from RANK/LOCAL_RANK (gloo on CPU, nccl on GPU); presets of 100M+ backbone
parameters are sharded with FSDP instead. The data position is the step number (batches are a pure
function of seed and step), so a resumed run replays exactly what an uninterrupted run would.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import torch.nn as nn

from genrec.checkpoints import CHECKPOINT_DIR, checkpoint_paths, load_latest_checkpoint, write_atomic
from genrec.data import (BucketedBatches, Vocabulary, batch_indices, build_windows, launch_times, list_shards,
                         read_split, read_vocabulary, task_names)
from genrec.distributed import DistContext, all_reduce_sum, init_distributed
from genrec.errors import ConfigError, GenrecError, InputError, TrainingError
from genrec.events import (MODEL_CONFIG_FILE, MODEL_METRICS_FILE, MODEL_WEIGHTS_FILE, NUM_RESERVED, PAD_INDEX,
                           VOCAB_FILE)
from genrec.model import (FullSoftmaxLoss, GenerativeRecommender, Loss, ModelConfig, NewTitles,
                          SampledSoftmaxLoss, build_sampler, preset_config)
from genrec.model.config import FSDP_MIN_PARAMS, check_tower_combine
from genrec.model.losses import Seen
from genrec.validation import evaluate_windows

PER_USER_FILE = "validation_per_user.parquet"
TENSORBOARD_DIR = "tensorboard"
ERROR_MARKER = "GENREC_TRAINING_ERROR:"
#: steps timed before a wall-clock budget (TrainConfig.max_seconds) fixes the run's step count (the
#: first steps run slower: the allocator's heap and the caches are still warming up).
BUDGET_CALIBRATION_STEPS = 20
#: later refits of a time budget, each from the mean speed since the first fit: one stretch of steps
#: can run 10% faster or slower than the run as a whole (a busy neighbour, batches of other lengths),
#: so a fit from steps 20-100 alone missed a 780 s budget by +-10% on ml-latest-small, and a last fit
#: at step 1,000 still by +8% when the machine slowed after it. Hence a refit every 500 steps too.
BUDGET_REFIT_STEPS = (100, 400, 1000)
BUDGET_REFIT_EVERY = 500


def budget_fit_due(step: int) -> bool:
    """Whether a time-budgeted run fixes its step count again after `step` steps."""
    return (step == BUDGET_CALIBRATION_STEPS or step in BUDGET_REFIT_STEPS
            or (step > BUDGET_REFIT_STEPS[-1] and step % BUDGET_REFIT_EVERY == 0))


OPTIMIZERS = ("auto", "adamw", "muon")
#: parameters Muon updates (TrainConfig.optimizer "muon"): the transformer blocks and the decoding head.
MUON_PREFIXES = ("blocks.", "head.")
MUON_WITH_FSDP = ("optimizer 'muon' orthogonalises whole weight matrices, which FSDP shards: "
                  "use fsdp='off' or optimizer 'adamw'")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Defaults measured on the built-in data (1,500-2,000
    users, 800 titles) and ml-latest-small: the 50K preset at 60 steps of 64 windows reaches
    like/play MRR 0.90/0.13 vs popularity 0.023/0.026. MTP heads (mtp_depth > 0; residual and
    detached by default) gained at delay 2 in three of three training seeds and lost or tied at
    delay 1 in 600-step runs (benchmarks/claims.py), for 1.7-1.8x the training time with two of them,
    so they are off by default; masking (random or new-title) only acts with a semantic tower."""

    preset: str = "1M"
    max_steps: int = 300
    max_tokens: int = 0  # budget in events seen (0: steps only); whichever comes first
    max_seconds: float = 0.0  # wall-clock budget of the training loop (0: none); see Trainer.fit_budget
    batch_size: int = 64  # global batch (windows), split across ranks
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # "muon": Muon (torch.optim.Muon) for the blocks' and the head's weight matrices, AdamW for the
    # rest (see build_optimizers); "adamw": AdamW for everything; "auto": Muon unless FSDP shards the
    # model (Muon needs whole matrices), then AdamW. On the built-in data (claims.py, 500K, 300 steps,
    # seed 0) Muon raised shadow play MRR 0.2308 -> 0.2722 (sampled + projected) and 0.2552 -> 0.2782
    # (full softmax), and made MTP win at serving delay 1 (1M, 600 steps: two seeds of three, a tie in
    # the third; AdamW lost in two). Cold-start MRR was 0.011 lower (seed 1). See benchmarks/HISTORY.md.
    optimizer: str = "auto"
    loss: str = "full"  # "full" | "sampled" (use sampled for catalogs beyond ~100k titles)
    sampler: str = "in-batch+uniform"  # see genrec.model.build_sampler
    num_negatives: int = 512
    logq: bool = True
    mtp_depth: int = 0
    mtp_decay: float = 0.5  # loss weight of depth j is mtp_decay**j
    # MTP heads read the backbone without training it (as Medusa heads do): the next-event head keeps
    # the backbone to itself, and each delay head is fitted to what the backbone already knows. With
    # residual heads (claims.py b, 1M, 600 steps, training seed 0, shadow play MRR vs next-token-only)
    # detached heads scored +0.0079 / -0.0003 / +0.0046 at delays 0 / 1 / 2, trained ones -0.0059 /
    # -0.0089 / +0.0040.
    mtp_detach: bool = True
    # Delay heads = next-event head (no gradient) + a learned correction starting at zero (see
    # ModelConfig.mtp_residual); False: independent heads (trained, not detached: delay 1 -0.0202).
    mtp_residual: bool = True
    # Random ID masking, off by default: on the built-in data (benchmarks/claims.py, 500K, 300 steps,
    # sampled head) p=0.2 lowered validation play MRR 0.256 -> 0.204 and cold-start shadow MRR
    # 0.056 -> 0.017 (see mask_new_days for the masking that helps).
    mask_prob: float = 0.0
    # New-title masking: a title is scored from metadata alone (ID part and bias masked) for rows
    # whose event came within this many days of its first event, as positive and as negative, the
    # way a cold-start title is scored at serving. Random masking teaches that a metadata-only title
    # is an average one; this teaches what a new one is like. On the built-in data (claims.py, c)
    # 7 days raised cold-start play MRR 0.056 -> 0.164 (0.129 -> 0.219 with history titles outside the
    # vocabulary read from metadata; 0.142 -> 0.247, all titles +0.007, with each shadow request
    # ranked over the titles launched by then) with all-title MRR unchanged. Acts only with
    # a semantic tower and vocabulary first_seen dates (titles first seen in the data's first 7 days
    # may be older and are never treated as new).
    mask_new_days: float = 7.0
    # How the semantic tower's metadata part joins a title's ID part (see genrec.model.item_tower):
    # "sum" for every title; "fallback" only for titles without one (new, masked, unknown).
    tower_combine: str = "sum"
    max_len: int = 50
    # Overlapping training windows for sequences longer than max_len: each ends this many events
    # before the next (0: max_len, no overlap); see genrec.data.build_windows.
    window_stride: int = 0
    # Batches of similar-length windows (pools of this many batches sorted by length; 0: random
    # batches), each padded only to its longest window: see genrec.data.BucketedBatches.
    bucket_pool: int = 0
    item_dim: int = 64  # projected head width (0: unprojected, as wide as the backbone)
    dropout: float = 0.0
    # 0.05 made MTP heads collapse every task to popularity on the built-in data (like MRR 0.83 -> 0.05
    # at 60 steps); 0.07 and 0.1 train MTP normally and next-token-only runs better (0.90 / 0.89). On
    # ml-latest-small 0.05 / 0.07 / 0.1 give NDCG@10 0.033 / 0.030 / 0.030 at 300 steps (within noise).
    temperature: float = 0.07
    normalize: bool = True
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    eval_batch_size: int = 256
    filter_seen: bool = False  # validation ranking: remove titles the user already had
    # Leave the titles a window already holds before each target out of that target's softmax (the
    # target itself stays): the training twin of filter_seen, for data whose rankings drop seen
    # titles (MovieLens, where nobody rates a film twice). Not for rewatches or likes of a title just
    # played, whose target is a seen title and whose rivals would be too. Either loss (a sampled
    # softmax leaves seen titles out of the row's negatives).
    exclude_seen: bool = False
    fsdp: str = "auto"  # "auto" (presets >= 100M when distributed) | "on" | "off"
    # Sparse gradients for the per-title tables (ID embedding, bias), made dense once before the
    # optimizer: each lookup's backward otherwise writes and adds a dense [catalog, dim] gradient
    # (inputs and the loss's items are two lookups), at a million titles as much as the sampled
    # head's matmuls (benchmarks/head_cost.py: 1.48x the backbone dense, 1.21-1.24x sparse).
    # "auto": on with the sampled loss, unless sharded (FSDP) or all-reduced by NCCL (no sparse
    # all-reduce); "on" | "off".
    sparse_grads: str = "auto"
    # Matmul precision of the training step (see training_autocast): "auto" = bf16 autocast on a
    # GPU, fp32 on a CPU; "bf16" = bf16 autocast on any device; "fp32" = never. On a CPU with native
    # bf16 (AVX512-BF16, AMX) the full-softmax head's matmuls run 2-4x faster, but on ml-latest-small
    # the extra steps did not pay: test NDCG@10 fell on three seeds (benchmarks/quality.py).
    precision: str = "auto"
    num_threads: int = 0  # torch CPU threads per process (0: cores / processes)
    # Independent models trained side by side (each its own torchrun run, seeded apart, with
    # nproc / members processes) and scored as one: the mean of their logits (genrec.members,
    # genrec.model.ensemble). On 2 CPU cores two one-thread members train more steps between them
    # than one model on both cores, and their mean ranks better than either (benchmarks/quality.py).
    members: int = 1

    def __post_init__(self) -> None:
        if self.loss not in ("full", "sampled"):
            raise ConfigError(f"loss {self.loss!r} must be 'full' or 'sampled'")
        if self.fsdp not in ("auto", "on", "off"):
            raise ConfigError(f"fsdp {self.fsdp!r} must be auto, on or off")
        if self.sparse_grads not in ("auto", "on", "off"):
            raise ConfigError(f"sparse_grads {self.sparse_grads!r} must be auto, on or off")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} must be one of {', '.join(OPTIMIZERS)}")
        if self.optimizer == "muon" and self.fsdp == "on":  # fsdp "auto" is checked at set-up, once it is known
            raise ConfigError(MUON_WITH_FSDP)
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision {self.precision!r} must be auto, bf16 or fp32")
        if self.max_seconds < 0:
            raise ConfigError(f"max_seconds {self.max_seconds} must be >= 0 (0: no time budget)")
        if self.max_steps < 0 or self.batch_size < 1 or self.grad_accum < 1 or self.max_len < 2:
            raise ConfigError("max_steps >= 0, batch_size >= 1, grad_accum >= 1 and max_len >= 2 are required")
        if not 0 <= self.window_stride <= self.max_len:
            raise ConfigError(f"window_stride {self.window_stride} must be in [0, max_len] (0: max_len)")
        if self.members < 1:
            raise ConfigError(f"members {self.members} must be >= 1 (1: one model, no ensemble)")
        if self.bucket_pool < 0:
            raise ConfigError(f"bucket_pool {self.bucket_pool} must be >= 0 (0: random batches)")
        check_tower_combine(self.tower_combine)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


# --- process set-up -------------------------------------------------------------------------------------
def keep_freed_memory() -> bool:
    """Stop glibc from handing large freed blocks back to the OS. Every CPU step allocates and frees
    [rows, catalog] logits of ~100 MB; by default each is a fresh mmap, so the next step pays a page
    fault per 4 KiB (on ml-latest-small about a quarter of a step). Kept in the heap, they are reused.
    True when set (glibc only; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # glibc malloc.h
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


# --- the loss over one batch ----------------------------------------------------------------------------
class TrainingStep(nn.Module):
    """Model + loss as one module, so DDP/FSDP see every parameter inside one forward."""

    def __init__(self, model: GenerativeRecommender, loss: Loss, mtp_decay: float,
                 launch: torch.Tensor | None = None, new_seconds: int = 0, mtp_detach: bool = False,
                 exclude_seen: bool = False) -> None:
        super().__init__()
        self.model, self.loss, self.mtp_decay, self.mtp_detach = model, loss, mtp_decay, mtp_detach
        self.exclude_seen = exclude_seen
        # New-title masking (TrainConfig.mask_new_days): [V] launch times, NEVER for back catalogue.
        self.launch, self.new_seconds = launch, new_seconds

    def forward(self, items: torch.Tensor, types: torch.Tensor, gaps: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None, generator: torch.Generator | None,
                target_times: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """items/types/gaps [B, T], targets [B, H, T] long -> (sum of weighted losses, sum of weights).
        `target_times` [B, H, T] long: event times of the targets, for new-title masking."""
        hidden = self.model(items, types, gaps, mask)
        w, h, t = torch.nonzero(targets >= NUM_RESERVED, as_tuple=True)
        queries = self.model.queries_at(hidden, w, t, h)
        depth = h % (self.model.config.mtp_depth + 1)
        if self.mtp_detach and self.model.config.mtp_depth > 0:
            ahead = (depth > 0).unsqueeze(1)
            queries = torch.where(ahead, self.model.queries_at(hidden.detach(), w, t, h), queries)
        new_titles = None
        if self.launch is not None and target_times is not None:
            all_masked = torch.ones(self.model.config.num_items, dtype=torch.bool, device=items.device)
            new_titles = NewTitles(lambda ids: self.model.item_vectors(ids, all_masked), self.launch,
                                   target_times[w, h, t], self.new_seconds)
        positives = targets[w, h, t]
        seen = seen_pairs(items, w, t, positives) if self.exclude_seen else None
        per = self.loss(queries, positives, lambda ids: self.model.item_vectors(ids, mask),
                        self.model.config.num_items, generator, new_titles, seen)
        weight = self.mtp_decay ** depth.to(per.dtype)
        return (per * weight).sum(), weight.sum()


def seen_pairs(items: torch.Tensor, w: torch.Tensor, t: torch.Tensor,
               positives: torch.Tensor) -> Seen:
    """(rows, ids) of every title at positions <= t[i] of window w[i] except row i's positive:
    what row i has already seen. items [B, T]; w, t, positives [N] -> two [P] long tensors."""
    history = items[w]  # [N, T]
    before = torch.arange(items.shape[1], device=items.device).unsqueeze(0) <= t.unsqueeze(1)
    rows, cols = torch.nonzero(before & (history >= NUM_RESERVED) & (history != positives.unsqueeze(1)),
                               as_tuple=True)
    return rows, history[rows, cols]


def build_loss(config: TrainConfig, num_items: int, counts: np.ndarray) -> Loss:
    if config.loss == "full":
        return FullSoftmaxLoss()
    sampler = build_sampler(config.sampler, num_items, config.num_negatives, torch.as_tensor(counts))
    return SampledSoftmaxLoss(sampler, logq=config.logq)


def resolve_optimizer(optimizer: str, sharded: bool) -> str:
    """The optimizer a run uses: "auto" is Muon unless FSDP shards the model, AdamW then; an explicit
    "muon" under FSDP is refused, since Muon orthogonalises whole matrices."""
    if optimizer == "auto":
        return "adamw" if sharded else "muon"
    if optimizer == "muon" and sharded:
        raise ConfigError(MUON_WITH_FSDP)
    return optimizer


def build_optimizers(model: nn.Module, config: TrainConfig, sharded: bool = False) -> list[torch.optim.Optimizer]:
    """[AdamW] or, when the optimizer resolves to "muon", [AdamW, Muon]. Muon orthogonalises each
    update of a hidden weight matrix (the blocks' and the head's), which trains them faster per step;
    the title tables, input projections, norms and biases stay on AdamW, as Muon's authors prescribe
    for embeddings and vectors. Its update RMS is matched to AdamW's ("match_rms_adamw"), so lr and
    weight decay carry over unchanged."""
    named = list(model.named_parameters())
    hidden = ([p for n, p in named if n.startswith(MUON_PREFIXES) and p.dim() == 2]
              if resolve_optimizer(config.optimizer, sharded) == "muon" else [])
    taken = {id(p) for p in hidden}
    decay = [p for n, p in named if p.dim() >= 2 and id(p) not in taken]
    no_decay = [p for n, p in named if p.dim() < 2]
    # The fused kernel updates every parameter in one pass (CPU: 0.8 ms a step instead of 5.6 for the
    # per-tensor loop on the 100K preset's ~50 tensors); FSDP's sharded parameters keep the default.
    optimizers: list[torch.optim.Optimizer] = [torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(0.9, 0.98), fused=not sharded)]
    if hidden:
        optimizers.append(torch.optim.Muon(hidden, lr=config.lr, weight_decay=config.weight_decay,
                                           adjust_lr_fn="match_rms_adamw"))
    return optimizers


def lr_factor(step: int, config: TrainConfig, total_steps: int) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio at total_steps."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def use_sparse_grads(config: TrainConfig, sharded: bool, ctx: DistContext) -> bool:
    """Whether a run's per-title tables get sparse gradients (TrainConfig.sparse_grads)."""
    if config.sparse_grads == "off":
        return False
    blocked = sharded or (ctx.distributed and ctx.device.type == "cuda")
    if config.sparse_grads == "on" and blocked:
        raise ConfigError("sparse_grads='on' needs unsharded weights and a gloo all-reduce "
                          "(set fsdp='off', or sparse_grads='auto' | 'off' on GPUs)")
    return not blocked and (config.sparse_grads == "on" or config.loss == "sampled")


def densify_grads(model: nn.Module) -> None:
    """Turn sparse gradients dense in place (AdamW and gradient clipping take dense ones): one
    [catalog, dim] tensor per table however many lookups fed it."""
    for p in model.parameters():
        if p.grad is not None and p.grad.is_sparse:
            p.grad = p.grad.to_dense()


def training_autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of a training step. bf16 matmuls keep fp32 weights, optimizer and
    softmax (the loss upcasts its logits); on a CPU "auto" stays fp32, so results do not depend on
    whether the machine has native bf16, and "bf16" is the explicit opt-in."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**63 - 1)


# --- semantic vectors, warm start -----------------------------------------------------------------------
def read_semantic(path: str, vocab: Vocabulary) -> np.ndarray:
    """[V, D] float32 metadata vectors aligned with the vocabulary (zeros where a title has none)."""
    from genrec.semantic import read_embeddings

    try:
        ids, vectors = read_embeddings(path)
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise InputError(f"{path}: cannot read embeddings ({exc})") from None
    out = np.zeros((len(vocab), vectors.shape[1]), np.float32)
    pos = vocab.positions(list(ids))
    out[pos[pos >= 0]] = vectors[pos >= 0]
    return out


#: tensors with one row per title, remapped by title id on a warm start (new titles: zero ID vector
#: and bias, as a fresh model has them).
PER_TITLE_TENSORS = ("tower.id_embedding.weight", "tower.bias.weight")


def warm_start(model: GenerativeRecommender, old_dir: str, vocab: Vocabulary, tasks: tuple[str, ...],
               member: int = 0) -> dict:
    """Load a previous model's weights: titles in both vocabularies keep their ID embeddings and
    biases bit-identical, new titles start with a zero ID part (scored by the semantic tower), other
    tensors load when their shapes (and, for heads, the task list) agree. From an ensemble
    (TrainConfig.members), member `member` modulo its size is the previous model."""
    from safetensors.torch import load_file

    old_state = load_file(os.path.join(old_dir, MODEL_WEIGHTS_FILE))
    old_cfg = json.loads(open(os.path.join(old_dir, MODEL_CONFIG_FILE)).read())
    old_members = int(old_cfg.get("members", 1))
    if old_members > 1:
        prefix = f"members.{member % old_members}."
        old_state = {k.removeprefix(prefix): v for k, v in old_state.items() if k.startswith(prefix)}
    old_vocab = read_vocabulary(os.path.join(old_dir, VOCAB_FILE))
    old_residual = ModelConfig.from_saved(old_cfg.get("model", {})).mtp_residual
    state = model.state_dict()
    # Rows follow titles, not positions: both vocabularies are ordered by count.
    rows = old_vocab.positions(list(vocab.item_ids[NUM_RESERVED:]))
    keep = np.flatnonzero(rows >= 0)
    loaded, skipped, reused = 0, [], 0
    for name, tensor in state.items():
        old = old_state.get(name)
        if name in PER_TITLE_TENSORS and old is not None and old.shape[1] == tensor.shape[1]:
            new = torch.zeros_like(tensor)
            new[:NUM_RESERVED] = old[:NUM_RESERVED]
            new[NUM_RESERVED + keep] = old[rows[keep]].to(tensor.dtype)
            state[name] = new
            reused = len(keep)
            loaded += 1
        elif name in ("tower.semantic", "tower.oov"):  # this run's metadata; OOV stays zeros
            continue
        elif name.startswith(("head.", "wtype.")) and tuple(old_cfg.get("tasks", ())) != tasks:
            skipped.append(name)
        elif name.startswith("head.") and old_residual != model.config.mtp_residual:
            skipped.append(name)  # same shape, other meaning (independent vs residual MTP heads)
        elif old is not None and old.shape == tensor.shape:
            state[name] = old.to(tensor.dtype)
            loaded += 1
        else:
            skipped.append(name)
    model.load_state_dict(state)
    return {"from": old_dir, "member": member % old_members, "loaded_tensors": loaded, "skipped_tensors": len(skipped),
            "reused_items": int(reused), "new_items": int(len(vocab) - NUM_RESERVED - reused)}


# --- the trainer ----------------------------------------------------------------------------------------
class Trainer:
    """setup() builds everything, train() runs the loop, save_model() writes the model folder,
    cleanup() releases the process group. One code path for 1 or N processes."""

    def __init__(self, data_dir: str, out_dir: str, config: TrainConfig, embeddings_path: str | None = None,
                 warm_start_dir: str | None = None, warm_start_member: int = 0) -> None:
        if config.members > 1:
            raise ConfigError(f"members {config.members}: an ensemble trains through launch_training (genrec "
                              "train, the pipeline), which runs each member as a run of its own")
        self.data_dir, self.out_dir, self.config = data_dir, out_dir, config
        self.embeddings_path, self.warm_start_dir = embeddings_path, warm_start_dir
        self.warm_start_member = warm_start_member
        self.step, self.tokens, self.train_seconds = 0, 0, 0.0
        self.step_cap = config.max_steps  # what a time budget may never exceed (max_steps, max_tokens)
        self.calibrated_at: tuple[int, float] = (0, 0.0)  # (step, train_seconds) of the first budget fit
        self.last_loss = float("nan")
        self.warm_info: dict = {}
        self._stop_signal = False

    # setup -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.config
        self.ctx = init_distributed()
        if self.ctx.device.type == "cpu":
            keep_freed_memory()
        torch.set_num_threads(cfg.num_threads or int(os.environ.get("OMP_NUM_THREADS") or 0)
                              or max(1, (os.cpu_count() or 1) // self.ctx.world_size))
        torch.manual_seed(cfg.seed)
        if cfg.batch_size % self.ctx.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by {self.ctx.world_size} processes")
        self.vocab = read_vocabulary(self.data_dir)
        # Tasks must agree on every rank: read only the event_types column of every train shard.
        types = pa.concat_tables([pq.read_table(p, columns=["event_types"]) for p in list_shards(self.data_dir, "train")])
        self.tasks = task_names(types)
        if not self.tasks:
            raise InputError(f"{self.data_dir}/train: no event types")
        semantic = read_semantic(self.embeddings_path, self.vocab) if self.embeddings_path else None
        self.model_config = preset_config(
            cfg.preset, max_len=cfg.max_len, num_items=len(self.vocab), num_tasks=len(self.tasks),
            mtp_depth=cfg.mtp_depth, mtp_residual=cfg.mtp_residual, item_dim=cfg.item_dim,
            semantic_dim=0 if semantic is None else semantic.shape[1],
            dropout=cfg.dropout, mask_prob=cfg.mask_prob, normalize=cfg.normalize, temperature=cfg.temperature,
            tower_combine=cfg.tower_combine)
        model = GenerativeRecommender(self.model_config)
        if semantic is not None:
            model.tower.set_semantic(torch.from_numpy(semantic))
        resume = load_latest_checkpoint(self.out_dir)
        if resume is None and self.warm_start_dir:
            self.warm_info = warm_start(model, self.warm_start_dir, self.vocab, self.tasks, self.warm_start_member)
        self.model = model.to(self.ctx.device)
        self.loss_fn = build_loss(cfg, len(self.vocab), self.vocab.counts).to(self.ctx.device)
        step_module = TrainingStep(self.model, self.loss_fn, cfg.mtp_decay, *self._new_title_launch(),
                                   mtp_detach=cfg.mtp_detach, exclude_seen=cfg.exclude_seen)
        self.use_fsdp = self.ctx.distributed and (
            cfg.fsdp == "on" or (cfg.fsdp == "auto" and model.get_num_params() >= FSDP_MIN_PARAMS))
        self.optimizer_name = resolve_optimizer(cfg.optimizer, self.use_fsdp)  # refused before any sharding
        self.sparse_grads = use_sparse_grads(cfg, self.use_fsdp, self.ctx)
        self.model.tower.set_sparse_grads(self.sparse_grads)  # before DDP, which reads it at wrapping
        if self.use_fsdp:
            from torch.distributed.fsdp import fully_shard

            for block in self.model.blocks:
                fully_shard(block)
            fully_shard(step_module)
            self.step_module: nn.Module = step_module
        elif self.ctx.distributed:
            self.step_module = nn.parallel.DistributedDataParallel(
                step_module, device_ids=[self.ctx.local_rank] if self.ctx.device.type == "cuda" else None,
                find_unused_parameters=True)
        else:
            self.step_module = step_module
        self.optimizers = build_optimizers(self.model, cfg, self.use_fsdp)
        table = read_split(self.data_dir, "train", self.ctx.rank, self.ctx.world_size)
        self.windows = build_windows(table, self.vocab, self.tasks, cfg.max_len, cfg.mtp_depth,
                                     self.model_config.time_buckets, stride=cfg.window_stride)
        if len(self.windows) == 0:
            raise TrainingError(f"{self.data_dir}/train: rank {self.ctx.rank} has no training windows")
        self.window_lengths = (self.windows.items != PAD_INDEX).sum(axis=1)
        self.rank_seed = cfg.seed + 7919 * self.ctx.rank  # each rank draws its own share's batches
        self.buckets = None
        if cfg.bucket_pool > 0:
            local = cfg.batch_size // self.ctx.world_size
            counts = torch.zeros(self.ctx.world_size, dtype=torch.float64)
            counts[self.ctx.rank] = len(self.windows)
            per_epoch = math.ceil(float(all_reduce_sum(counts, self.ctx).max()) / local)  # same on every rank
            self.buckets = BucketedBatches(self.window_lengths, local, self.rank_seed, cfg.seed, cfg.bucket_pool,
                                           per_epoch)
        fill = all_reduce_sum(torch.tensor([float(self.window_lengths.sum()), float(len(self.windows))]), self.ctx)
        tokens_per_step = cfg.batch_size * float(fill[0] / fill[1])
        self.total_steps = cfg.max_steps
        if cfg.max_tokens:
            self.total_steps = min(cfg.max_steps, math.ceil(cfg.max_tokens / tokens_per_step))
        self.step_cap = self.total_steps
        # One schedule per optimizer, stepped together; self.scheduler (AdamW's) is the one reported.
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(s, cfg, self.total_steps))
                           for o in self.optimizers]
        self.scheduler = self.schedulers[0]
        if resume is not None:
            self._restore(resume)
        self.writer = None
        if self.ctx.is_main:
            from torch.utils.tensorboard import SummaryWriter

            os.makedirs(os.path.join(self.out_dir, CHECKPOINT_DIR), exist_ok=True)
            for stale in glob.glob(os.path.join(self.out_dir, CHECKPOINT_DIR, "*.tmp-*")):
                os.remove(stale)
            self.writer = SummaryWriter(os.path.join(self.out_dir, TENSORBOARD_DIR))
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:  # noqa: ARG002
        self._stop_signal = True

    # state -------------------------------------------------------------------------------------------
    def _state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_sd, optim_sd = get_state_dict(self.step_module, self.optimizers, options=opts)
        return {"model": model_sd, "optimizer": optim_sd, "scheduler": self.scheduler.state_dict(),
                "schedulers": [s.state_dict() for s in self.schedulers],
                "step": self.step, "tokens": self.tokens, "train_seconds": self.train_seconds,
                "total_steps": self.total_steps,
                "last_loss": self.last_loss,
                "rng": torch.get_rng_state(), "config": self.config.to_json()}

    def _restore(self, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        saved_schedules = state.get("schedulers", [state["scheduler"]])
        if len(saved_schedules) != len(self.schedulers):
            raise ConfigError(f"{self.out_dir}: its checkpoint was written with {len(saved_schedules)} optimizer(s), "
                              f"this run has {len(self.schedulers)} (optimizer {self.optimizer_name!r}): resume "
                              "with the optimizer it was started with, or train into a fresh folder")
        set_state_dict(self.step_module, self.optimizers, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"],
                       options=StateDictOptions(full_state_dict=True, strict=False))
        for scheduler, saved in zip(self.schedulers, saved_schedules, strict=True):
            scheduler.load_state_dict(saved)
        self.step, self.tokens = int(state["step"]), int(state["tokens"])
        self.total_steps = int(state.get("total_steps", self.total_steps))
        self.train_seconds = float(state["train_seconds"])
        self.last_loss = float(state.get("last_loss", float("nan")))
        torch.set_rng_state(state["rng"])

    def save_checkpoint(self) -> None:
        """Every rank takes part in gathering the state; rank 0 writes it atomically."""
        state = self._state()
        if self.ctx.is_main:
            write_atomic(state, os.path.join(self.out_dir, CHECKPOINT_DIR, f"step_{self.step:09d}.pt"))
            for old in checkpoint_paths(self.out_dir)[:-self.config.keep_checkpoints]:
                os.remove(old)
        if self.ctx.distributed:
            dist.barrier()

    # loop --------------------------------------------------------------------------------------------
    def _new_title_launch(self) -> tuple[torch.Tensor | None, int]:
        """Launch times for new-title masking, or None when it is off or cannot act (no metadata to
        score from, or no first-seen dates in the vocabulary)."""
        seconds = int(self.config.mask_new_days * 86_400)
        first_seen = self.vocab.first_seen
        if seconds <= 0 or self.model_config.semantic_dim == 0 or first_seen is None:
            return None, 0
        data_start = int(first_seen[NUM_RESERVED:].min())
        return torch.from_numpy(launch_times(self.vocab, data_start, seconds)).to(self.ctx.device), seconds

    def _batch(self, step: int, micro: int) -> tuple[torch.Tensor, ...]:
        """This rank's slice of the global batch of `step` (micro-batch `micro`)."""
        cfg, ctx = self.config, self.ctx
        local = cfg.batch_size // ctx.world_size
        counter = step * cfg.grad_accum + micro
        idx = (self.buckets(counter) if self.buckets is not None
               else batch_indices(counter, local, len(self.windows), self.rank_seed))
        w = self.windows
        # Padding is at the end and attention is causal, so cutting the columns after the longest
        # window leaves every real position's output and target as they were.
        T = max(1, int(self.window_lengths[idx].max()))
        return tuple(torch.from_numpy(a[idx, ..., :T]).to(ctx.device)
                     for a in (w.items, w.types, w.gaps, w.targets, w.target_times))

    def train(self) -> None:
        cfg, ctx = self.config, self.ctx
        from tqdm import tqdm

        bar = tqdm(total=self.total_steps, initial=self.step, disable=not ctx.is_main, desc="train",
                   mininterval=2.0, file=sys.stderr)
        autocast = training_autocast(cfg.precision, ctx.device)
        started = time.perf_counter() - self.train_seconds
        self.step_module.train()
        while self.step < self.total_steps and not self._stop_signal:
            seed = step_seed(cfg.seed, self.step)
            generator = torch.Generator(device=ctx.device).manual_seed(seed)
            torch.manual_seed(seed + ctx.rank)
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss_sum, weight_sum, tokens = 0.0, 0.0, 0
            for micro in range(cfg.grad_accum):
                items, types, gaps, targets, target_times = self._batch(self.step, micro)
                mask = None
                # Masking the ID part only makes sense when metadata can stand in for it.
                if cfg.mask_prob > 0 and self.model_config.semantic_dim > 0:
                    mask = torch.rand(len(self.vocab), generator=generator, device=ctx.device) < cfg.mask_prob
                # Normalise by the global weight so DDP's gradient average equals one big batch.
                with torch.no_grad():
                    local_weight = (cfg.mtp_decay ** ((torch.arange(targets.shape[1], device=ctx.device)
                                    % (cfg.mtp_depth + 1)).float())[None, :, None] * (targets >= NUM_RESERVED)).sum()
                global_weight = all_reduce_sum(local_weight.detach().float(), ctx)
                sync = (ctx.distributed and not self.use_fsdp and micro < cfg.grad_accum - 1)
                ctxmgr = self.step_module.no_sync() if sync else contextlib.nullcontext()
                with ctxmgr, autocast:
                    total, _ = self.step_module(items, types, gaps, targets, mask, generator, target_times)
                    loss = total * ctx.world_size / global_weight.clamp(min=1e-9) / cfg.grad_accum
                loss.backward()
                loss_sum += float(total.detach())
                weight_sum += float(local_weight)
                tokens += int((items > 0).sum())
            stats = all_reduce_sum(torch.tensor([loss_sum, weight_sum, float(tokens)], dtype=torch.float64), ctx)
            mean_loss = float(stats[0] / max(float(stats[1]), 1e-9))
            if not math.isfinite(mean_loss):
                raise TrainingError(f"{self.data_dir}: training loss became {mean_loss} at step {self.step} "
                                    f"(lr {self.scheduler.get_last_lr()[0]:.3g}); lower lr or check the data")
            if self.sparse_grads:
                densify_grads(self.model)
            grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
            for optimizer, scheduler in zip(self.optimizers, self.schedulers):
                optimizer.step()
                scheduler.step()
            self.step += 1
            self.tokens += int(stats[2])
            self.last_loss = mean_loss
            self.train_seconds = time.perf_counter() - started
            if self.writer is not None:
                self.writer.add_scalar("train/loss", mean_loss, self.step)
                self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
                self.writer.add_scalar("train/grad_norm", grad_norm, self.step)
                self.writer.add_scalar("train/tokens", self.tokens, self.step)
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
            if cfg.max_seconds and budget_fit_due(self.step) \
                    and self.step < self.total_steps:
                self.fit_budget()
                bar.total = self.total_steps
                for scheduler in self.schedulers:
                    scheduler.last_epoch -= 1  # recompute this step's LR on the new schedule
                    scheduler.step()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            if cfg.max_tokens and self.tokens >= cfg.max_tokens:
                break
        bar.close()
        if self._stop_signal:
            self.save_checkpoint()
            raise TrainingError(f"{self.out_dir}: stopped by SIGTERM at step {self.step}; "
                                "checkpoint saved, rerun to resume")
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every:
            self.save_checkpoint()

    def fit_budget(self) -> None:
        """Fix the step count so the loop ends within `max_seconds`, from the speed of the steps so
        far (after the first fit: since the first fit, leaving out the slow first steps): the LR
        schedule then still decays to its end on the last step, which a plain timeout would cut
        short. Never above `step_cap`. Every rank takes the smallest estimate, so all stop on the
        same step. (Also used to keep a benchmark's fit inside its time limit on data of any size.)"""
        cfg = self.config
        since_step, since_seconds = self.calibrated_at
        per_step = (self.train_seconds - since_seconds) / max(self.step - since_step, 1)
        fits = self.step + int(max(0.0, cfg.max_seconds - self.train_seconds) / max(per_step, 1e-9))
        if since_step == 0:
            self.calibrated_at = (self.step, self.train_seconds)
        estimate = torch.tensor([float(min(self.step_cap, max(fits, self.step)))], dtype=torch.float64)
        if self.ctx.distributed:
            dist.all_reduce(estimate, op=dist.ReduceOp.MIN)
        self.total_steps = int(estimate[0])

    # evaluation and output ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> tuple[dict, pa.Table]:
        """Rank every validation target among the whole train vocabulary (rank 0 only)."""
        return validate_model(self.model, self.data_dir, self.vocab, self.tasks, self.config, self.ctx.device)

    def save_model(self, metrics: dict, per_user: pa.Table) -> None:
        """Write the model folder (see write_model_folder)."""
        model_card = {
            "preset": self.config.preset, "model": asdict(self.model_config), "tasks": list(self.tasks),
            "mtp_depth": self.config.mtp_depth, "vocabulary_fingerprint": self.vocab.fingerprint,
            "num_params": self.model.get_num_params(), "loss": self.loss_fn.describe(),
            "sampler": getattr(getattr(self.loss_fn, "sampler", None), "describe", lambda: "none")(),
            "item_tower": self.model.tower.describe(),
            "train": asdict(self.config) | {"optimizer": self.optimizer_name},  # what "auto" resolved to
            "description": describe_run(self.config, self.loss_fn),
        }
        write_model_folder(self.out_dir, self.model.state_dict(), model_card, os.path.join(self.data_dir, VOCAB_FILE),
                           per_user, metrics)

    def _gather_model(self) -> None:
        """Under FSDP, gather the full weights (every rank takes part) into a plain model on rank 0,
        which evaluates and saves it alone."""
        if not self.use_fsdp:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(self.step_module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.ctx.is_main:
            plain = GenerativeRecommender(self.model_config)
            plain.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
            self.model = plain.to(self.ctx.device)

    def run(self) -> dict | None:
        """Train, then (rank 0) evaluate and write the model folder; returns the metrics on rank 0."""
        self.train()
        self._gather_model()
        if self.ctx.distributed:
            dist.barrier()
        if not self.ctx.is_main:
            return None
        task_metrics, per_user = self.evaluate()
        metrics = {"preset": self.config.preset, "num_params": self.model.get_num_params(),
                   "tokens": self.tokens, "steps": self.step, "train_seconds": round(self.train_seconds, 3),
                   "optimizer": self.optimizer_name, "final_train_loss": self.last_loss, "tasks": task_metrics}
        if self.warm_info:
            metrics["warm_start"] = self.warm_info
        if self.writer is not None:
            for task, m in task_metrics.items():
                for key in ("mrr", "recall@10", "ndcg@10", "loss"):
                    self.writer.add_scalar(f"validation/{task}/{key}", m[key], self.step)
        self.save_model(metrics, per_user)
        return metrics

    def cleanup(self) -> None:
        if getattr(self, "writer", None) is not None:
            self.writer.close()
        if dist.is_initialized():
            dist.destroy_process_group()


def validate_model(model: nn.Module, data_dir: str, vocab: Vocabulary, tasks: tuple[str, ...], config: TrainConfig,
                   device: torch.device) -> tuple[dict, pa.Table]:
    """Per-task metrics and the per-user table of `model` (one model or an ensemble) on data_dir's
    validation split, windowed and filtered as `config` trains and ranks."""
    table = read_split(data_dir, "validation")
    windows = build_windows(table, vocab, tasks, config.max_len, config.mtp_depth, model.config.time_buckets,
                            predictions_only=True)
    return evaluate_windows(model, windows, table if config.filter_seen else None, vocab, tasks,
                            config.eval_batch_size, device)


def write_model_folder(out_dir: str, state: dict[str, torch.Tensor], card: dict, vocab_path: str,
                       per_user: pa.Table, metrics: dict) -> None:
    """Write a model folder through a staging dir; metrics.json, which says the folder is complete,
    is moved in last, so a reader never sees a half-written model."""
    from safetensors.torch import save_file

    staging = os.path.join(out_dir, ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, os.path.join(staging, MODEL_WEIGHTS_FILE))
    with open(os.path.join(staging, MODEL_CONFIG_FILE), "w") as fh:
        json.dump(card, fh, indent=2)
    shutil.copyfile(vocab_path, os.path.join(staging, VOCAB_FILE))
    pq.write_table(per_user, os.path.join(staging, PER_USER_FILE))
    with open(os.path.join(staging, MODEL_METRICS_FILE), "w") as fh:
        json.dump(metrics, fh, indent=2)
    for name in (MODEL_WEIGHTS_FILE, MODEL_CONFIG_FILE, VOCAB_FILE, PER_USER_FILE, MODEL_METRICS_FILE):
        os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    os.rmdir(staging)


def describe_run(config: TrainConfig, loss: Loss) -> str:
    """One line naming what makes this run different (used for run names and model cards)."""
    return (f"genrec-{config.preset} {loss.describe()} mtp={config.mtp_depth} mask={config.mask_prob} "
            f"new_mask={config.mask_new_days:g}d len={config.max_len} steps={config.max_steps}")


# --- entry points ---------------------------------------------------------------------------------------
def launch_training(data_dir: str, out_dir: str, config: TrainConfig, embeddings_path: str | None = None,
                    warm_start_dir: str | None = None, nproc: int = 1) -> dict:
    """Run `torchrun --standalone --nproc_per_node=nproc -m genrec.training ...` and return the
    validation metrics (also in out_dir/metrics.json). Resumes from out_dir/checkpoints if present.
    An ensemble (config.members > 1) runs one such torchrun per member, side by side (genrec.members)."""
    from genrec.members import drop_stale_members, train_members  # members builds on this module

    if config.members > 1:
        return train_members(data_dir, out_dir, config, embeddings_path, warm_start_dir, nproc)
    metrics = run_torchrun(data_dir, out_dir, config, embeddings_path, warm_start_dir, nproc)
    drop_stale_members(out_dir, keep=0)  # an ensemble trained here before
    return metrics


def run_torchrun(data_dir: str, out_dir: str, config: TrainConfig, embeddings_path: str | None = None,
                 warm_start_dir: str | None = None, nproc: int = 1, warm_start_member: int = 0,
                 env_overrides: dict[str, str] | None = None, stop: threading.Event | None = None) -> dict:
    """One torchrun of the training worker (see launch_training); `env_overrides` are set in the
    workers' environment (an ensemble member's GPUs). Once `stop` is set (a sibling member failed)
    torchrun gets SIGTERM, which it passes on to the workers: they checkpoint and stop, and this
    raises TrainingError."""
    os.makedirs(out_dir, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "genrec.training", "--data", data_dir, "--out", out_dir, "--config", config.to_json()]
    if embeddings_path:
        cmd += ["--embeddings", embeddings_path]
    if warm_start_dir:
        cmd += ["--warm-start", warm_start_dir, "--warm-start-member", str(warm_start_member)]
    env = dict(os.environ) | (env_overrides or {})
    env.setdefault("OMP_NUM_THREADS", str(config.num_threads or max(1, (os.cpu_count() or 1) // nproc)))
    # torchrun leaves a torchelastic_* log folder in the temp dir of every launch: keep it, and the
    # workers' own temporary files, in a folder that goes with the run.
    with tempfile.TemporaryDirectory(prefix="genrec-torchrun-") as scratch:
        proc = subprocess.Popen(cmd, env={**env, "TMPDIR": scratch}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            stderr = _wait_unless_stopped(proc, stop)
        except BaseException:  # as subprocess.run does: no torchrun outlives its caller
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0 and stop is not None and stop.is_set():
        raise TrainingError(f"{out_dir}: stopped (exit {proc.returncode}) because another member failed; its "
                            "checkpoints stay for a rerun to resume from")
    if proc.returncode != 0:
        raise TrainingError(failure_message(stderr, out_dir, proc.returncode))
    path = os.path.join(out_dir, MODEL_METRICS_FILE)
    if not os.path.exists(path):
        raise TrainingError(f"{path}: training finished without writing metrics")
    with open(path) as fh:
        return json.load(fh)


def _wait_unless_stopped(proc: subprocess.Popen, stop: threading.Event | None, poll_s: float = 1.0,
                         grace_s: float = 120.0) -> str:
    """Wait for `proc` (reading its pipes all along, so it never blocks on a full one); once `stop`
    is set, SIGTERM it, then SIGKILL after `grace_s`. Returns its stderr."""
    while True:
        try:
            return proc.communicate(timeout=poll_s if stop is not None else None)[1]
        except subprocess.TimeoutExpired:
            if stop.is_set():
                proc.terminate()
                try:
                    return proc.communicate(timeout=grace_s)[1]
                except subprocess.TimeoutExpired:
                    proc.kill()
                    return proc.communicate()[1]


def failure_message(stderr: str, out_dir: str, returncode: int) -> str:
    """What a failed torchrun says went wrong: a worker's own GenrecError when it raised one; else
    the last lines the workers printed before torchrun's report (a worker killed by a signal, a C++
    abort, an uncaught exception), which torchrun's summary ("Signal 6 (SIGABRT) received by PID")
    does not repeat, and the summary's last line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    marked = next((line.split(ERROR_MARKER, 1)[1].strip() for line in lines if ERROR_MARKER in line), None)
    if marked is not None:
        return marked
    report = next((i for i, line in enumerate(lines) if "failed (exitcode" in line), None)
    if report is None:
        return f"{out_dir}: torchrun exited with {returncode}: {' | '.join(lines[-3:])}"
    worker = [line.strip() for line in lines[:report] if not line.startswith(("[W", "W1", "W0"))]
    summary = next((line.strip() for line in reversed(lines) if line.strip(" =-")), "")
    return f"{out_dir}: torchrun exited with {returncode}: {' | '.join(worker[-3:] + [summary])}"


def load_recommender(model_dir: str, embeddings_path: str | None = None):
    """The trained model as a genrec.recommender.Recommender (see genrec.model.serving)."""
    from genrec.model.serving import load_recommender as _load

    return _load(model_dir, embeddings_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="genrec training worker (run under torchrun)")
    parser.add_argument("--data", required=True, help="sequences folder (train/, validation/, vocabulary.parquet)")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--config", default="{}", help="TrainConfig as JSON")
    parser.add_argument("--embeddings", default=None, help="semantic embeddings Parquet")
    parser.add_argument("--warm-start", default=None, help="previous model folder")
    parser.add_argument("--warm-start-member", type=int, default=0, help="member to start from when it is an ensemble")
    args = parser.parse_args(argv)
    trainer = None
    try:
        trainer = Trainer(args.data, args.out, TrainConfig.from_json(args.config), args.embeddings, args.warm_start,
                          args.warm_start_member)
        trainer.setup()
        metrics = trainer.run()
        if metrics is not None:
            print(json.dumps(metrics))
        return 0
    except GenrecError as exc:
        print(f"{ERROR_MARKER} {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if trainer is not None:
            trainer.cleanup()


if __name__ == "__main__":
    sys.exit(main())
