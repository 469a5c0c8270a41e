"""Item representations: collaborative ID embedding + MLP over the semantic metadata vector.

Why: a title's ID embedding only exists once it has been watched; the metadata part exists from
launch. Dropping the ID part at random in training (collaborative-embedding masking: the ID vector
becomes zeros and the per-title bias a learned out-of-vocabulary bias) teaches the model to score a
title from metadata alone, which is exactly what a cold-start title has.

How the two parts combine (ModelConfig.tower_combine): "sum" adds the metadata MLP to every title's
ID part; "fallback" uses it only where the ID part is missing (titles outside the vocabulary, masked
titles), so a title with a trained ID part is scored as a model without a tower would score it. On
the built-in data that learned warm titles faster (300 steps: +5-9% shadow MRR on all titles, -9-12%
on cold start), but by 600 steps it tied on all titles and lost more on cold start (README,
tower_combine), so "sum" is the default.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from genrec.events import PAD_INDEX, UNK_INDEX
from genrec.model.config import ModelConfig


class ItemTower(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.id_embedding = nn.Embedding(config.num_items, config.item_dim)
        # The ID part of a masked or never-seen title: zeros (a buffer, not learned), so such a title
        # is scored from its metadata alone, the same way in training and at serving, and the model
        # cannot learn one shared "masked title" direction. (Measured on the built-in data, claim c
        # of benchmarks/claims.py: cold-start play MRR 0.017 with a learned vector, 0.021 with zeros,
        # 0.120 without masking at all, so this was not the main cause; nor is the OOV bias, which
        # moves it by under 0.01.) Old model folders that learned one still load it.
        self.register_buffer("oov", torch.zeros(config.item_dim))
        # A popularity-like logit offset per title (dropped with the ID part when masked): with
        # L2-normalised vectors the direction alone cannot say how popular a title is.
        self.bias = nn.Embedding(config.num_items, 1)
        nn.init.zeros_(self.bias.weight)
        self.oov_bias = nn.Parameter(torch.zeros(1))
        if config.semantic_dim > 0:
            self.mlp: nn.Module | None = nn.Sequential(
                nn.Linear(config.semantic_dim, config.tower_hidden), nn.GELU(),
                nn.Linear(config.tower_hidden, config.item_dim))
            # [V, semantic_dim] metadata vectors aligned with the vocabulary (zeros: none known).
            self.register_buffer("semantic", torch.zeros(config.num_items, config.semantic_dim))
            # Mean metadata vector of the training catalog. Sentence vectors of one catalog share a
            # large common direction; the MLP sees each title's offset from it, else every title
            # starts out looking alike and the shared branch drowns the ID embeddings.
            self.register_buffer("semantic_mean", torch.zeros(config.semantic_dim))
        else:
            self.mlp = None

    def describe(self) -> str:
        join = "+" if self.config.tower_combine == "sum" else " else "
        sem = f"id{join}mlp({self.config.semantic_dim}->{self.config.item_dim})" if self.mlp is not None else "id"
        return f"item_tower[{sem}, mask_p={self.config.mask_prob}]"

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids [...] long -> [..., item_dim + 1] (vector, then logit bias); only the rows asked for
        are computed, so a step on a 1M-title catalog with sampled negatives never touches the whole
        table. `mask` [V] bool replaces the ID part (and bias) of the masked titles by the OOV ones.
        Padding maps to zeros. A batch repeats titles many times (inputs, targets, negatives), so the
        tower runs once per distinct title and the rows are gathered back."""
        uniq, inverse = torch.unique(ids, return_inverse=True)
        # index_select, not [inverse]: its backward is index_add_, not an accumulating index_put
        return self._rows(uniq, mask).index_select(0, inverse.reshape(-1)).view(*ids.shape, -1)

    def _assemble(self, ids: torch.Tensor, replaced: torch.Tensor, vectors: torch.Tensor | None) -> torch.Tensor:
        """[..., item_dim + 1]: the trained per-title part (ID vector, then logit bias), replaced by
        the OOV part where `replaced` (masked or unknown titles), plus the metadata MLP of `vectors`
        (None: the titles' own rows of the metadata table) on every row (tower_combine "sum") or on
        the replaced rows only ("fallback", which reads and runs nothing for the others)."""
        out = torch.cat([self.id_embedding(ids), self.bias(ids)], dim=-1)
        if bool(replaced.any()):  # nothing replaced (no masking, no UNK): no pass, no where-backward
            out = torch.where(replaced.unsqueeze(-1), torch.cat([self.oov, self.oov_bias]).expand_as(out), out)
        if self.mlp is None:
            return out
        if self.config.tower_combine == "sum":
            meta = self.semantic[ids] if vectors is None else vectors
            return out + nn.functional.pad(self.mlp(self.centered(meta)), (0, 1))
        if not bool(replaced.any()):  # leave the MLP untouched: no gradient, so no optimizer step either
            return out
        rows = replaced.nonzero(as_tuple=True)
        meta = self.semantic[ids[rows]] if vectors is None else vectors[rows]
        return out.index_put(rows, out[rows] + nn.functional.pad(self.mlp(self.centered(meta)), (0, 1)))

    def _rows(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # UNK (a title outside the vocabulary, in a history) reads as an unknown title, i.e. the OOV
        # part, as `represent` scores one: its own row is never trained (every train title has one).
        replaced = ids == UNK_INDEX
        if mask is not None:
            replaced = replaced | mask[ids]
        out = self._assemble(ids, replaced, None)
        pad = ids == PAD_INDEX
        return out * (~pad).unsqueeze(-1).to(out.dtype) if bool(pad.any()) else out

    def set_sparse_grads(self, sparse: bool) -> None:
        """Sparse gradients for the per-title tables (see TrainConfig.sparse_grads); the weights
        and what they compute are the same either way."""
        self.id_embedding.sparse = sparse
        self.bias.sparse = sparse

    def centered(self, vectors: torch.Tensor) -> torch.Tensor:
        """[..., D] metadata vectors minus the catalog mean; rows of zeros (no metadata) stay zero."""
        known = (vectors != 0).any(dim=-1, keepdim=True)
        return torch.where(known, vectors - self.semantic_mean, vectors)

    def set_semantic(self, vectors: torch.Tensor) -> None:
        """Fill the [V, D] metadata table and its mean (over titles that have metadata)."""
        self.semantic.copy_(vectors)
        known = (vectors != 0).any(dim=-1)
        if known.any():
            self.semantic_mean.copy_(vectors[known].mean(dim=0))

    def represent(self, indices: torch.Tensor, vectors: torch.Tensor | None) -> torch.Tensor:
        """Items of any catalog: indices [C] long into this vocabulary (-1: unknown title, scored from
        metadata alone plus the OOV bias), vectors [C, semantic_dim] or None -> [C, item_dim + 1]."""
        known = indices >= 0
        if self.mlp is not None and vectors is None:
            vectors = self.semantic[indices.clamp(min=0)] * known.unsqueeze(-1)
        return self._assemble(indices.clamp(min=0), ~known, vectors)
