"""The generative recommender, top to bottom, in the spirit of nanoGPT's model.py.

A decoder-only transformer reads a user's events (item, event type, time gap, position) and, at
every position, emits one query per (task, prediction depth). A query is scored against the item
table by a dot product, so the decoding head costs `item_dim` per title instead of `n_embd`
(the projected head). Items are represented by the item tower (ID embedding + metadata MLP), shared
by the input and the output so titles never seen in training still get a representation.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from genrec.events import NUM_RESERVED, PAD_INDEX
from genrec.model.config import ModelConfig
from genrec.model.item_tower import ItemTower


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, C] -> [B, T, C]; position t only sees positions <= t (padding sits at the end)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))
        # No dropout inside attention: it forces the slow math kernel; residual dropout suffices.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GenerativeRecommender(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tower = ItemTower(config)
        self.item_in = nn.Linear(config.item_dim, config.n_embd, bias=False)
        self.wpe = nn.Embedding(config.max_len, config.n_embd)
        self.wtype = nn.Embedding(config.num_tasks + 1, config.n_embd, padding_idx=0)
        self.wgap = nn.Embedding(config.time_buckets, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        # Projected decoding head: hidden -> item_dim, one slice per (task, depth).
        self.head = nn.Linear(config.n_embd, config.num_heads_out * config.item_dim, bias=False)
        self.apply(self._init_weights)
        # ID embeddings start 5x larger than nanoGPT's 0.02 and the metadata branch at zero: item
        # vectors are normalised after the two parts are summed, and a shared MLP over similar
        # sentence vectors otherwise outgrows the sparse ID rows and makes every title look alike
        # (measured on the built-in data: validation MRR stuck at popularity's level).
        nn.init.normal_(self.tower.id_embedding.weight, mean=0.0, std=0.1)
        if self.tower.mlp is not None:
            nn.init.zeros_(self.tower.mlp[-1].weight)
            nn.init.zeros_(self.tower.mlp[-1].bias)
        if config.mtp_residual and config.mtp_depth:
            with torch.no_grad():  # delay heads start as copies of their task's next-event head
                self.head.weight.view(config.num_tasks, config.mtp_depth + 1, config.item_dim, -1)[:, 1:].zero_()
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # --- sizes ---------------------------------------------------------------------------------------
    def get_num_params(self, non_embedding: bool = True) -> int:
        """Backbone parameters (blocks + final norm) when non_embedding, else every parameter."""
        if not non_embedding:
            return sum(p.numel() for p in self.parameters())
        return sum(p.numel() for p in self.blocks.parameters()) + sum(p.numel() for p in self.ln_f.parameters())

    def flops_per_token(self) -> float:
        """Forward+backward FLOPs per event, nanoGPT's 6N + 12 L T C estimate (backbone only)."""
        c = self.config
        return 6 * self.get_num_params() + 12 * c.n_layer * c.max_len * c.n_embd

    # --- forward -------------------------------------------------------------------------------------
    def item_vectors(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids [...] long -> [..., item_dim + 1] item representations as the decoding head sees them:
        the vector (L2-normalised when the config says so) then the title's logit bias, matched by a
        constant 1 appended to every query. `mask` [V] bool: collaborative-embedding masking."""
        return self.finish_items(self.tower(ids, mask))

    def finish_items(self, raw: torch.Tensor) -> torch.Tensor:
        """Tower output [..., item_dim + 1] -> scored form (normalised vector, bias)."""
        if not self.config.normalize:
            return raw
        return torch.cat([F.normalize(raw[..., :-1], dim=-1), raw[..., -1:]], dim=-1)

    def represent_items(self, indices: torch.Tensor, vectors: torch.Tensor | None) -> torch.Tensor:
        """Scored form of vocabulary rows `indices` (-1: outside it) with metadata `vectors` given
        instead of the stored ones (serving's catalog of titles the model may not know)."""
        return self.finish_items(self.tower.represent(indices, vectors))

    @staticmethod
    def input_vectors(scored: torch.Tensor) -> torch.Tensor:
        """Scored form [..., item_dim + 1] -> the item vector the input reads (the bias dropped)."""
        return scored[..., :-1]

    @property
    def input_dim(self) -> int:
        """Width of forward's `vectors`."""
        return self.config.item_dim

    def item_table(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[V, item_dim + 1] the whole vocabulary (row i = index i)."""
        return self.item_vectors(torch.arange(self.config.num_items, device=self.wpe.weight.device), mask)

    def forward(self, items: torch.Tensor, types: torch.Tensor, gaps: torch.Tensor,
                mask: torch.Tensor | None = None, vectors: torch.Tensor | None = None) -> torch.Tensor:
        """items, types, gaps [B, T] long (padding at the end) -> hidden [B, T, n_embd] float.
        `mask` [V] bool: titles whose ID part is masked (training only). `vectors` [B, T, item_dim]:
        the input item vectors (item_vectors without the bias) to read instead of the items' own, for
        titles the vocabulary lacks (serving fills them in from metadata)."""
        B, T = items.shape
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.config.max_len}")
        pos = torch.arange(T, device=items.device)
        if vectors is None:
            vectors = self.input_vectors(self.item_vectors(items, mask))
        x = self.item_in(vectors) + self.wpe(pos)[None] + self.wtype(types) + self.wgap(gaps)
        x = x * (items != PAD_INDEX).unsqueeze(-1)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def queries(self, hidden: torch.Tensor, head_index: torch.Tensor) -> torch.Tensor:
        """hidden [N, n_embd], head_index [N] long (task * (mtp_depth + 1) + depth) -> [N, item_dim]
        queries, scaled so that `queries @ items.T` are logits."""
        q = self.head_outputs(hidden)
        return self._scale(q[torch.arange(len(q), device=q.device), head_index])

    def queries_at(self, hidden: torch.Tensor, w: torch.Tensor, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Queries of head h[i] at position (w[i], t[i]) of hidden [B, T, n_embd] -> [N, item_dim].
        Every head is computed once per position (one matmul), then the asked ones are picked:
        cheaper than gathering a weight slice per target."""
        return self._scale(self.head_outputs(hidden)[w, t, h])

    def head_outputs(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., n_embd] -> [..., num_heads_out, item_dim] unscaled queries of every head.
        Residual MTP heads (config.mtp_residual) add a learned correction to their task's next-event
        query, which they do not train: a delay-j target equals the next-event target whenever the
        j skipped events are of other types, so the next-event head is the right start, and a delay
        head trained from scratch learned less than it (benchmarks/claims.py, README)."""
        c = self.config
        q = self.head(hidden).view(*hidden.shape[:-1], c.num_heads_out, c.item_dim)
        if not (c.mtp_residual and c.mtp_depth):
            return q
        q = q.view(*hidden.shape[:-1], c.num_tasks, c.mtp_depth + 1, c.item_dim)
        first = q[..., :1, :]
        return torch.cat([first, first.detach() + q[..., 1:, :]], dim=-2).flatten(-3, -2)

    def _scale(self, q: torch.Tensor) -> torch.Tensor:
        """[N, item_dim] -> [N, item_dim + 1]: normalised / temperature, then 1 for the item bias."""
        c = self.config
        q = F.normalize(q, dim=-1) / c.temperature if c.normalize else q
        return F.pad(q, (0, 1), value=1.0)

    def head_index(self, task: int | torch.Tensor, depth: int | torch.Tensor) -> int | torch.Tensor:
        """Index of the head for a task and a prediction depth (depth beyond mtp_depth -> last head)."""
        k = self.config.mtp_depth
        if isinstance(depth, torch.Tensor):
            depth = depth.clamp(max=k)
        else:
            depth = min(depth, k)
        return task * (k + 1) + depth

    @staticmethod
    def catalog_slice() -> slice:
        """Indices of real items in the item table (reserved rows excluded)."""
        return slice(NUM_RESERVED, None)
