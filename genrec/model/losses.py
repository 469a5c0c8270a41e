"""Training losses over item logits: full softmax (the reference) and sampled softmax with logQ.

Both take already-scaled queries [N, D] and the item table [V, D], so logits are `q @ e.T`.
"""
from __future__ import annotations

import abc

import torch
import torch.nn.functional as F

from genrec.events import NUM_RESERVED
from genrec.model.samplers import NegativeSampler


class Loss(abc.ABC):
    @abc.abstractmethod
    def __call__(self, queries: torch.Tensor, positives: torch.Tensor, table: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """queries [N, D] float, positives [N] long item indices, table [V, D] -> [N] float losses."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for model cards and run names."""


class FullSoftmaxLoss(Loss):
    """Cross-entropy over the whole catalog (reserved indices excluded)."""

    def __call__(self, queries, positives, table, generator=None):
        logits = queries @ table[NUM_RESERVED:].T
        return F.cross_entropy(logits.float(), positives - NUM_RESERVED, reduction="none")

    def describe(self) -> str:
        return "full-softmax"


class SampledSoftmaxLoss(Loss):
    """Softmax over the positive and sampled negatives, logits minus log Q when `logq` is set.
    A negative equal to the row's positive is masked out (it is not a negative)."""

    def __init__(self, sampler: NegativeSampler, logq: bool = True) -> None:
        self.sampler, self.logq = sampler, logq

    def __call__(self, queries, positives, table, generator=None):
        negatives = self.sampler.sample(positives, generator)  # [M]
        pos_logits = (queries * table[positives]).sum(-1, keepdim=True)  # [N, 1]
        neg_logits = queries @ table[negatives].T  # [N, M]
        if self.logq:
            n = positives.numel()
            pos_logits = pos_logits - self.sampler.log_q(positives, n).unsqueeze(-1)
            neg_logits = neg_logits - self.sampler.log_q(negatives, n).unsqueeze(0)
        neg_logits = neg_logits.masked_fill(negatives.unsqueeze(0) == positives.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos_logits, neg_logits], dim=1).float()
        return torch.logsumexp(logits, dim=1) - logits[:, 0]

    def describe(self) -> str:
        return f"sampled-softmax[{self.sampler.describe()}{', logQ' if self.logq else ''}]"
