"""Several independently trained recommenders scored as one model: a title's logit is the mean of the
members' logits (the normalised geometric mean of their softmax distributions).

Why: on two CPU cores one 2-thread (or 2-process DDP) run of a small model is ~1.4x, not 2x, as fast
as one single-thread run, so two single-thread members trained side by side see more steps between
them, and members that started from different weights rank differently enough that together they
rank better than either (benchmarks/quality.py, README). Training never couples them: each member is
a plain run (see genrec.members); this module only scores them together.

The mean is computed as one dot product: the ensemble's hidden state, queries and item vectors are
the members' concatenated (each query divided by the member count), so `queries @ items.T` gives
the mean logits and every caller written for one GenerativeRecommender (validation, serving, top-k
retrieval) works unchanged. A mean, not a sum, keeps the validation loss on a single model's scale.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from genrec.model.config import ModelConfig
from genrec.model.item_tower import ItemTower
from genrec.model.transformer import GenerativeRecommender


class MemberEnsemble(nn.Module):
    """K GenerativeRecommenders of one config (their own weights) behind GenerativeRecommender's
    scoring interface. State dict keys are `members.<k>.<member key>`."""

    def __init__(self, members: list[GenerativeRecommender]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        configs = {m.config for m in members}
        if len(configs) != 1:
            raise ValueError("ensemble members must share one ModelConfig")
        self.members = nn.ModuleList(members)
        self.config: ModelConfig = members[0].config

    # --- what callers read of a single model --------------------------------------------------------
    @property
    def tower(self) -> ItemTower:
        """The first member's tower: metadata vectors and their presence are the same in every member."""
        return self.members[0].tower

    @property
    def input_dim(self) -> int:
        return sum(m.input_dim for m in self.members)

    def get_num_params(self, non_embedding: bool = True) -> int:
        return sum(m.get_num_params(non_embedding) for m in self.members)

    def flops_per_token(self) -> float:
        return sum(m.flops_per_token() for m in self.members)

    def head_index(self, task: int | torch.Tensor, depth: int | torch.Tensor) -> int | torch.Tensor:
        return self.members[0].head_index(task, depth)

    # --- scoring: every output is the members' outputs side by side ----------------------------------
    def item_vectors(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([m.item_vectors(ids, mask) for m in self.members], dim=-1)

    def item_table(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([m.item_table(mask) for m in self.members], dim=-1)

    def represent_items(self, indices: torch.Tensor, vectors: torch.Tensor | None) -> torch.Tensor:
        return torch.cat([m.represent_items(indices, vectors) for m in self.members], dim=-1)

    def input_vectors(self, scored: torch.Tensor) -> torch.Tensor:
        parts = scored.split([m.config.item_dim + 1 for m in self.members], dim=-1)
        return torch.cat([m.input_vectors(p) for m, p in zip(self.members, parts)], dim=-1)

    def forward(self, items: torch.Tensor, types: torch.Tensor, gaps: torch.Tensor,
                mask: torch.Tensor | None = None, vectors: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, K * n_embd]: each member's hidden states; `vectors` as input_vectors gives them."""
        parts = (vectors.split([m.input_dim for m in self.members], dim=-1) if vectors is not None
                 else [None] * len(self.members))
        return torch.cat([m(items, types, gaps, mask, v) for m, v in zip(self.members, parts)], dim=-1)

    def queries(self, hidden: torch.Tensor, head_index: torch.Tensor) -> torch.Tensor:
        """[N, K * n_embd] -> [N, K * (item_dim + 1)]: member k's query / K against member k's items."""
        parts = hidden.split([m.config.n_embd for m in self.members], dim=-1)
        return torch.cat([m.queries(h, head_index) for m, h in zip(self.members, parts)], dim=-1) / len(self.members)


def build_model(config: ModelConfig, members: int = 1) -> GenerativeRecommender | MemberEnsemble:
    """One model, or an ensemble of `members` freshly initialised ones (weights are then loaded)."""
    if members <= 1:
        return GenerativeRecommender(config)
    return MemberEnsemble([GenerativeRecommender(config) for _ in range(members)])
