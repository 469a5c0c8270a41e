"""Negative samplers for sampled softmax: small swappable parts passed into the loss.

Each sampler returns ids and the log of each id's expected count in the sample (log Q), which the
loss subtracts from the logits (logQ correction) so that popular titles, sampled more often, are
not over-penalised.
"""
from __future__ import annotations

import abc
import math

import torch

from genrec.events import NUM_RESERVED


class NegativeSampler(abc.ABC):
    def to(self, device: torch.device | str) -> "NegativeSampler":
        """This sampler with its tables on `device`, moved once: sample and log_q then index them
        where the training step runs (a catalog-sized host-to-device copy per step otherwise, and a
        CPU table cannot be drawn from with a CUDA generator)."""
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        return self

    @abc.abstractmethod
    def sample(self, positives: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """positives [N] long -> negative ids [M] long (never a reserved index)."""

    @abc.abstractmethod
    def log_q(self, ids: torch.Tensor, n_positives: int) -> torch.Tensor:
        """[M] float: log expected number of times each id appears in one sample."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for model cards and run names."""


class UniformSampler(NegativeSampler):
    """`num` ids drawn uniformly (with replacement) from the catalog."""

    def __init__(self, num_items: int, num: int) -> None:
        self.num_items, self.num = num_items, num

    def sample(self, positives, generator=None):
        return torch.randint(NUM_RESERVED, self.num_items, (self.num,), generator=generator,
                             device=positives.device)

    def log_q(self, ids, n_positives):
        value = math.log(self.num / max(self.num_items - NUM_RESERVED, 1))
        return torch.full(ids.shape, value, dtype=torch.float32, device=ids.device)

    def describe(self) -> str:
        return f"uniform({self.num})"


def _probabilities(counts: torch.Tensor, alpha: float) -> torch.Tensor:
    p = counts.double().clamp(min=0) ** alpha
    p[:NUM_RESERVED] = 0.0
    return (p / p.sum()).float()


class PopularitySampler(NegativeSampler):
    """`num` ids drawn (with replacement) proportionally to count**alpha."""

    def __init__(self, counts: torch.Tensor, num: int, alpha: float = 1.0) -> None:
        self.p, self.num, self.alpha = _probabilities(counts, alpha), num, alpha

    def sample(self, positives, generator=None):
        return torch.multinomial(self.p, self.num, replacement=True, generator=generator)

    def log_q(self, ids, n_positives):
        return torch.log(self.num * self.p[ids]).clamp(min=-80.0)

    def describe(self) -> str:
        return f"popularity({self.num}, alpha={self.alpha})"


class TopSampler(NegativeSampler):
    """The `num` most frequent titles, every time (log Q 0: each is in every sample exactly once).
    Mixed with a random sampler over the whole catalog ("top+uniform"), the softmax is exact over
    the head, where the hard negatives of most rows are, and estimated over the tail."""

    def __init__(self, counts: torch.Tensor, num: int) -> None:
        order = torch.argsort(counts.clamp(min=0).double()[NUM_RESERVED:], descending=True, stable=True)
        self.ids, self.num = order[:num] + NUM_RESERVED, num
        self.member = torch.zeros(len(counts), dtype=torch.bool)
        self.member[self.ids] = True

    def sample(self, positives, generator=None):
        return self.ids

    def log_q(self, ids, n_positives):
        """0 for the top titles (always sampled once), -80 (never) for the rest, as the others clamp."""
        return torch.where(self.member[ids], 0.0, -80.0)

    def describe(self) -> str:
        return f"top({self.num})"


class InBatchSampler(NegativeSampler):
    """The batch's own distinct positives; an item is in the batch with probability about
    1 - (1 - p)^N for unigram frequency p, which is its log Q."""

    def __init__(self, counts: torch.Tensor) -> None:
        self.p = _probabilities(counts, 1.0)

    def sample(self, positives, generator=None):
        return torch.unique(positives[positives >= NUM_RESERVED])

    def log_q(self, ids, n_positives):
        p = self.p[ids].double()
        return torch.log(-torch.expm1(n_positives * torch.log1p(-p.clamp(max=1 - 1e-12)))).float().clamp(min=-80.0)

    def describe(self) -> str:
        return "in-batch"


class MixedSampler(NegativeSampler):
    """Union of several samplers; an id's expected count is the sum over them."""

    def __init__(self, samplers: list[NegativeSampler]) -> None:
        self.samplers = samplers

    def to(self, device):
        self.samplers = [s.to(device) for s in self.samplers]
        return self

    def sample(self, positives, generator=None):
        return torch.cat([s.sample(positives, generator) for s in self.samplers])

    def log_q(self, ids, n_positives):
        return torch.logsumexp(torch.stack([s.log_q(ids, n_positives) for s in self.samplers]), dim=0)

    def describe(self) -> str:
        return "+".join(s.describe() for s in self.samplers)


def build_sampler(kind: str, num_items: int, num_negatives: int, counts: torch.Tensor) -> NegativeSampler:
    """Sampler from a short name: 'uniform', 'popularity', 'in-batch', or '+'-joined mixes such as
    'in-batch+uniform' (each sampled part draws `num_negatives`)."""
    from genrec.errors import ConfigError

    parts = []
    for name in kind.split("+"):
        if name == "uniform":
            parts.append(UniformSampler(num_items, num_negatives))
        elif name == "popularity":
            parts.append(PopularitySampler(counts, num_negatives))
        elif name == "in-batch":
            parts.append(InBatchSampler(counts))
        elif name == "top":
            parts.append(TopSampler(counts, num_negatives))
        else:
            raise ConfigError(f"unknown negative sampler {name!r} in {kind!r} (uniform, popularity, in-batch, top)")
    return parts[0] if len(parts) == 1 else MixedSampler(parts)
