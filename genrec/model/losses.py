"""Training losses over item logits: full softmax (the reference) and sampled softmax with logQ.

Both take already-scaled queries [N, D] and an item lookup (ids [M] -> [M, D] vectors), so logits
are `q @ e.T` and a sampled loss only computes the rows it uses.
"""
from __future__ import annotations

import abc
from typing import Callable

import torch
import torch.nn.functional as F

from genrec.events import NUM_RESERVED
from genrec.model.samplers import NegativeSampler


ItemLookup = Callable[[torch.Tensor], torch.Tensor]


class Loss(abc.ABC):
    @abc.abstractmethod
    def __call__(self, queries: torch.Tensor, positives: torch.Tensor, items: ItemLookup, num_items: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """queries [N, D] float, positives [N] long item indices, items: ids -> vectors, num_items V
        -> [N] float losses."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for model cards and run names."""


class FullSoftmaxLoss(Loss):
    """Cross-entropy over the whole catalog (reserved indices excluded)."""

    def __call__(self, queries, positives, items, num_items, generator=None):
        logits = queries @ items(torch.arange(NUM_RESERVED, num_items, device=queries.device)).T
        return F.cross_entropy(logits.float(), positives - NUM_RESERVED, reduction="none")

    def describe(self) -> str:
        return "full-softmax"


class SampledSoftmaxLoss(Loss):
    """Softmax over the positive and sampled negatives, logits minus log Q when `logq` is set.
    A negative equal to the row's positive is masked out (it is not a negative)."""

    def __init__(self, sampler: NegativeSampler, logq: bool = True) -> None:
        self.sampler, self.logq = sampler, logq

    def __call__(self, queries, positives, items, num_items, generator=None):
        negatives = self.sampler.sample(positives, generator)  # [M]
        pos_logits = (queries * items(positives)).sum(-1, keepdim=True)  # [N, 1]
        neg_logits = queries @ items(negatives).T  # [N, M]
        if self.logq:
            n = positives.numel()
            pos_logits = pos_logits - self.sampler.log_q(positives, n).unsqueeze(-1)
            neg_logits = neg_logits - self.sampler.log_q(negatives, n).unsqueeze(0)
        neg_logits = neg_logits.masked_fill(negatives.unsqueeze(0) == positives.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos_logits, neg_logits], dim=1).float()
        return torch.logsumexp(logits, dim=1) - logits[:, 0]

    def describe(self) -> str:
        return f"sampled-softmax[{self.sampler.describe()}{', logQ' if self.logq else ''}]"
