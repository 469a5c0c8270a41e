"""Model sizes and settings: one frozen dataclass, presets named by backbone size.

Backbone size is counted like nanoGPT's `get_num_params(non_embedding=True)`, but without anything
that grows with the catalog (item embeddings, semantic tower, decoding heads) or with the input
features (positions, event types, time gaps): transformer blocks plus the final norm. That is the
number a scaling-law fit needs, since it is what more compute buys.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from genrec.errors import ConfigError

# name -> (n_layer, n_head, n_embd); counts within 10% of the name (see backbone_params).
PRESETS: dict[str, tuple[int, int, int]] = {
    # small presets for CPU sweeps on a laptop
    "50K": (4, 2, 32),
    "100K": (2, 2, 64),  # the shape of SASRec as usually benchmarked (2 blocks, 2 heads, 64 wide)
    "200K": (4, 4, 64),
    "500K": (3, 4, 120),
    "1M": (5, 4, 128),
    # the paper's ladder
    "2M": (4, 4, 208),
    "8M": (8, 6, 288),
    "32M": (10, 8, 512),
    "128M": (10, 16, 1024),
    "512M": (10, 16, 2048),
    "1B": (20, 16, 2048),
}
#: how the metadata MLP joins a title's ID part (ModelConfig.tower_combine; see genrec.model.item_tower).
TOWER_COMBINES = ("sum", "fallback")


def check_tower_combine(value: str) -> None:
    """ConfigError unless `value` is one of TOWER_COMBINES (shared by the model and training configs)."""
    if value not in TOWER_COMBINES:
        raise ConfigError(f"tower_combine {value!r} must be one of {', '.join(TOWER_COMBINES)}")

#: presets trained with FSDP (sharded parameters) instead of DDP when more than one process runs.
FSDP_MIN_PARAMS = 100_000_000


def preset_value(name: str) -> int:
    """'128M' -> 128_000_000 (the size a preset is named after)."""
    units = {"K": 1_000, "M": 1_000_000, "B": 1_000_000_000}
    try:
        return int(float(name[:-1]) * units[name[-1].upper()])
    except (KeyError, ValueError, IndexError):
        raise ConfigError(f"preset {name!r} is not a size like 2M or 500K") from None


def backbone_params(n_layer: int, n_embd: int) -> int:
    """Analytic backbone count: per block 12 d^2 + 13 d (attention, MLP, two LayerNorms with biases),
    plus the final LayerNorm."""
    return n_layer * (12 * n_embd * n_embd + 13 * n_embd) + 2 * n_embd


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model from config.json (no code, no pickles)."""

    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 32
    max_len: int = 50  # positions (events per window)
    num_items: int = 4  # vocabulary size including the reserved indices (pad, unk, mask)
    num_tasks: int = 1  # event types; each is a task with its own head
    mtp_depth: int = 0  # extra heads: head j predicts the first event of a task at least j events ahead
    # Delay heads as corrections of the next-event head: head j's query = (next-event query, no
    # gradient) + its own projection, which starts at zero. False: independent heads (models saved
    # before this field existed).
    mtp_residual: bool = True
    item_dim: int = 32  # width of item embeddings and of the projected decoding head
    semantic_dim: int = 0  # metadata vector width (0: no semantic tower)
    tower_hidden: int = 128
    # How the metadata MLP joins the ID part (see genrec.model.item_tower): "sum" for every title, or
    # "fallback": only for titles without an ID part (outside the vocabulary, masked).
    tower_combine: str = "sum"
    time_buckets: int = 32  # log2 buckets of the gap to the previous event, in seconds
    dropout: float = 0.0
    mask_prob: float = 0.0  # collaborative-embedding masking (drop the ID part) in training
    normalize: bool = True  # L2-normalise queries and items (cosine similarity)
    temperature: float = 0.07  # logits = similarity / temperature when normalised (see TrainConfig)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if not 0.0 <= self.mask_prob <= 1.0:
            raise ConfigError(f"mask_prob {self.mask_prob} is not in [0, 1]")
        if self.mtp_depth < 0:
            raise ConfigError(f"mtp_depth {self.mtp_depth} is negative")
        check_tower_combine(self.tower_combine)

    @classmethod
    def from_saved(cls, saved: dict) -> "ModelConfig":
        """The config a saved model card holds; a field added after the model was saved takes the
        value that reproduces that model (mtp_residual: independent heads; tower_combine: sum), not
        today's default."""
        return cls(**{"mtp_residual": False, "tower_combine": "sum", **saved})

    @property
    def num_heads_out(self) -> int:
        """Decoding heads: one per task and prediction depth."""
        return self.num_tasks * (self.mtp_depth + 1)


def preset_config(preset: str, **overrides) -> ModelConfig:
    """ModelConfig for a named preset, with data-dependent fields given as overrides
    (item_dim=0 means no projection: items as wide as the backbone)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    n_layer, n_head, n_embd = PRESETS[preset]
    if overrides.get("item_dim") == 0:
        overrides["item_dim"] = n_embd
    return replace(ModelConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                               item_dim=min(n_embd, 64)), **overrides)
