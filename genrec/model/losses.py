"""Training losses over item logits: full softmax (the reference) and sampled softmax with logQ.

Both take already-scaled queries [N, D] and an item lookup (ids [M] -> [M, D] vectors), so logits
are `q @ e.T` and a sampled loss only computes the rows it uses.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable

import torch

from genrec.events import NEVER, NUM_RESERVED
from genrec.model.samplers import NegativeSampler


ItemLookup = Callable[[torch.Tensor], torch.Tensor]
Seen = tuple[torch.Tensor, torch.Tensor]  # (rows [P], item ids [P]): titles left out of each row's softmax


def _row_losses(probs: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log probs[n, target[n]]; where that probability underflowed to 0, log-sum-exp of the logits
    (which the caller has not overwritten) minus the target's logit."""
    loss = -probs.gather(1, target.unsqueeze(1)).squeeze(1).log()
    lost = ~torch.isfinite(loss)
    if bool(lost.any()):
        loss[lost] = torch.logsumexp(logits[lost], dim=1) - logits[lost].gather(1, target[lost, None]).squeeze(1)
    return loss


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """Per-row cross-entropy that keeps the softmax from the forward and turns it into the gradient
    (softmax - one-hot) in place. F.cross_entropy materialises the log-softmax, a zero-filled
    gradient and the log-softmax backward: more passes over a [rows, catalog] tensor, which on a
    10k-title catalog is most of what a CPU step spends outside matmuls. The backward consumes what
    the forward saved, so it runs once per forward (no retain_graph).

    Titles left out of a row (`rows`, `cols`) are set to -inf in the logits themselves, which the
    caller hands over (they come back as a second, non-differentiable output, since autograd wants
    every changed input returned): done outside, as
    an autograd index_put, its backward would clone the whole [rows, catalog] gradient to zero
    entries that are zero already (their softmax is 0)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, rows: torch.Tensor | None,
                cols: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)  # the logits output gets no gradient: no zero-filled one either
        if rows is not None:
            logits.index_put_((rows, cols), logits.new_tensor(float("-inf")))
            ctx.mark_dirty(logits)
        # torch.softmax is one fused kernel: on a CPU it takes ~0.6x the time of max, subtract, exp
        # and sum as separate passes (2,000 x 9,701 logits: 29 vs 50 ms).
        probs = torch.softmax(logits, dim=1)  # kept for the backward
        loss = _row_losses(probs, logits, target)
        ctx.mark_non_differentiable(logits)  # returned only because autograd asks for changed inputs
        ctx.save_for_backward(probs, target)
        return loss, logits

    @staticmethod
    def backward(ctx, grad: torch.Tensor | None, _: None):
        if grad is None:
            return None, None, None, None
        if getattr(ctx, "spent", False):
            raise RuntimeError("softmax_cross_entropy: backward ran twice on one forward (retain_graph)")
        ctx.spent = True
        probs, target = ctx.saved_tensors
        g = probs.mul_(grad.unsqueeze(1))
        return g.scatter_add_(1, target.unsqueeze(1), -grad.unsqueeze(1)), None, None, None


def softmax_cross_entropy(logits: torch.Tensor, target: torch.Tensor, seen: Seen | None = None) -> torch.Tensor:
    """logits [N, C] float, target [N] long -> [N] losses (as F.cross_entropy, reduction="none").
    `seen` (rows [P], columns [P]): entries left out of their row's softmax, written as -inf into
    `logits` in place (pass logits nothing else reads)."""
    rows, cols = seen if seen is not None else (None, None)
    return _SoftmaxCrossEntropy.apply(logits, target, rows, cols)[0]


class _SampledSoftmaxCrossEntropy(torch.autograd.Function):
    """Sampled softmax cross-entropy with the positive as column 0, written with the negatives'
    logits into one [N, 1 + M] float buffer: the negatives' matmul lands in its columns 1.. (BLAS
    writes a strided block), so there is no [positive | negatives] concatenation, and the backward
    multiplies the strided softmax block straight into the gradients of the queries and of one
    [N + M, D] vectors tensor, scaling their [N, D] sides by the row gradients (autograd's cat,
    slices, addmm and softmax-minus-one-hot add passes over [N, M] and zero-filled buffers). The
    head alone at 1M titles and 10,000 negatives: 44.4 -> 40.3 ms a step (benchmarks/HISTORY.md).

    Matmuls run in `compute` (bf16 under autocast, as an autograd addmm would), the softmax in fp32.
    The offsets are constants (log Q, log copies); entries (`rows`, `cols`) of the negatives' block
    are left out of their row's softmax."""

    @staticmethod
    def forward(ctx, queries: torch.Tensor, vectors: torch.Tensor, pos_offset: torch.Tensor,
                neg_offset: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, compute: torch.dtype) -> torch.Tensor:
        """queries [N, D]; vectors [N + M, D]: each row's positive, then the M negatives."""
        n, m = len(queries), len(vectors) - len(queries)
        logits = torch.empty(n, m + 1, dtype=torch.float32, device=queries.device)
        block = logits[:, 1:]
        q, neg = queries.to(compute), vectors[n:].to(compute)
        if compute == torch.float32:
            torch.addmm(neg_offset.unsqueeze(0), q, neg.T, out=block)
        else:
            torch.add(q @ neg.T, neg_offset.unsqueeze(0), out=block)
        logits[:, 0] = (queries.float() * vectors[:n].float()).sum(-1) - pos_offset
        if len(rows):
            block.index_put_((rows, cols), logits.new_tensor(float("-inf")))
        probs = torch.softmax(logits, dim=1)
        loss = _row_losses(probs, logits, torch.zeros(n, dtype=torch.long, device=logits.device))
        ctx.compute = compute
        ctx.save_for_backward(probs, queries, vectors)
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        probs, queries, vectors = ctx.saved_tensors  # read only: a second backward is as good as the first
        n = len(queries)
        # The gradient is (softmax - one-hot) * grad per row; its negatives' block is never formed:
        # grad scales the [N, D] sides of the matmuls instead of a pass over [N, M].
        p_neg = probs[:, 1:]
        g_pos = ((probs[:, 0] - 1) * grad).unsqueeze(1)  # [N, 1]: the positive's column
        scale = grad.unsqueeze(1).float()
        if ctx.compute != torch.float32:
            p_neg = p_neg.to(ctx.compute)
        neg = vectors[n:].to(ctx.compute)
        grad_q = grad_vectors = None
        if ctx.needs_input_grad[0]:
            grad_q = (scale * (p_neg @ neg).float() + g_pos * vectors[:n].float()).to(queries.dtype)
        if ctx.needs_input_grad[1]:
            grad_vectors = torch.empty_like(vectors)
            grad_vectors[:n] = g_pos * queries.float()
            grad_vectors[n:] = p_neg.T @ (scale * queries.float()).to(ctx.compute)
        return grad_q, grad_vectors, None, None, None, None, None


def _matmul_dtype(queries: torch.Tensor) -> torch.dtype:
    """The dtype an autograd matmul of `queries` would run in: autocast's, when it is on."""
    device = queries.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return queries.dtype


@dataclass(frozen=True)
class NewTitles:
    """New-title masking for one batch of rows. Title j is new for row i when row i's event came
    less than `seconds` after j launched; a new title is scored from its metadata alone (`metadata`:
    ids -> vectors with the ID part and bias masked), as a cold-start title is at serving, whether it
    is the row's positive or a negative: a positive alone would teach that metadata-only titles
    always win."""

    metadata: ItemLookup
    launch: torch.Tensor  # [V] long epoch seconds (NEVER: never new)
    times: torch.Tensor  # [N] long epoch seconds of each row's event
    seconds: int

    def is_new(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [M] -> [N, M] bool: title ids[m] is new at row n's time."""
        age = self.times.unsqueeze(1) - self.launch[ids].unsqueeze(0)
        return (age >= 0) & (age < self.seconds)

    def row_is_new(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [N] -> [N] bool: title ids[n] is new at row n's time."""
        age = self.times - self.launch[ids]
        return (age >= 0) & (age < self.seconds)

    def rescore(self, queries: torch.Tensor, logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """logits [N, M] of queries against items `ids` [M] -> the same with new titles' columns
        scored from metadata; only titles that launch at all are looked at."""
        col = torch.nonzero(self.launch[ids] != NEVER).squeeze(1)
        if len(col) == 0:
            return logits
        meta = queries @ self.metadata(ids[col]).T
        return logits.index_copy(1, col, torch.where(self.is_new(ids[col]), meta, logits[:, col]))


def negative_columns(positives: torch.Tensor, negatives: torch.Tensor, seen: Seen | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows [P], columns [P]) of the distinct, sorted `negatives` [M] to leave out of each row's
    softmax: the row's own positive, and every title in `seen` (rows, ids) for that row. Binary
    search over the negatives: costs the pairs, never [rows, M] nor a catalog-sized table."""
    if not len(negatives):
        nothing = positives.new_empty(0)
        return nothing, nothing

    def columns(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        at = torch.searchsorted(negatives, ids).clamp_(max=len(negatives) - 1)
        return negatives[at] == ids, at

    hit, at = columns(positives)
    rows = torch.nonzero(hit).squeeze(1)
    cols = at[rows]
    if seen is not None:
        seen_rows, seen_ids = seen
        hit, at = columns(seen_ids)
        rows, cols = torch.cat([rows, seen_rows[hit]]), torch.cat([cols, at[hit]])
    return rows, cols


class Loss(abc.ABC):
    def to(self, device: torch.device | str) -> "Loss":
        """This loss with whatever tables it holds on `device` (the training step's)."""
        return self

    @abc.abstractmethod
    def __call__(self, queries: torch.Tensor, positives: torch.Tensor, items: ItemLookup, num_items: int,
                 generator: torch.Generator | None = None, new_titles: NewTitles | None = None,
                 seen: Seen | None = None) -> torch.Tensor:
        """queries [N, D] float, positives [N] long item indices, items: ids -> vectors, num_items V
        -> [N] float losses. `new_titles`: score titles new at each row's time from metadata alone;
        `seen`: titles to leave out of a row's softmax (never its positive)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for model cards and run names."""


class FullSoftmaxLoss(Loss):
    """Cross-entropy over the whole catalog (reserved indices excluded)."""

    def __call__(self, queries, positives, items, num_items, generator=None, new_titles=None, seen=None):
        catalog = torch.arange(NUM_RESERVED, num_items, device=queries.device)
        logits = queries @ items(catalog).T
        if new_titles is not None:
            logits = new_titles.rescore(queries, logits, catalog)
        # The matmul's backward does not read its output, so the loss may overwrite seen titles in it.
        columns = None if seen is None else (seen[0], seen[1] - NUM_RESERVED)
        return softmax_cross_entropy(logits.float(), positives - NUM_RESERVED, columns)

    def describe(self) -> str:
        return "full-softmax"


class SampledSoftmaxLoss(Loss):
    """Softmax over the positive and sampled negatives, logits minus log Q when `logq` is set.
    A negative equal to the row's positive is masked out (it is not a negative)."""

    def __init__(self, sampler: NegativeSampler, logq: bool = True) -> None:
        self.sampler, self.logq = sampler, logq

    def to(self, device):
        self.sampler = self.sampler.to(device)
        return self

    def __call__(self, queries, positives, items, num_items, generator=None, new_titles=None, seen=None):
        # Each distinct negative once (sorted), its copies counted in its logit (+log count): the
        # same loss as one column per copy, on fewer columns.
        negatives, copies = torch.unique(self.sampler.sample(positives, generator), return_counts=True)  # [M]
        # One lookup for both: the tower runs once over their distinct titles, and with dense
        # gradients (TrainConfig.sparse_grads) each lookup's backward writes a whole [catalog, dim]
        # gradient (head_cost.py at 1M titles: 1.70x -> 1.38-1.54x the backbone alone).
        ids = torch.cat([positives, negatives])
        vectors = items(ids)  # [N + M, D]: positives, then negatives
        offset = copies.log()
        pos_offset = torch.zeros(len(positives), device=queries.device)
        if self.logq:  # one log Q call over the same ids as the lookup
            log_q = self.sampler.log_q(ids, positives.numel())
            pos_offset, offset = log_q[:len(positives)], offset - log_q[len(positives):]
        # Column 0 is the positive. Left out of a row: its own positive among the negatives (it is
        # not a negative) and, with `seen`, the titles it has seen; the loss writes -inf over them
        # in place and its backward is softmax minus one-hot (fewer passes over [rows, negatives]
        # than an autograd masked_fill and logsumexp). Found per pair, never as an [N, M] mask.
        rows, cols = negative_columns(positives, negatives, seen)
        if new_titles is None:
            return _SampledSoftmaxCrossEntropy.apply(queries, vectors, pos_offset.float(), offset.float(), rows,
                                                     cols, _matmul_dtype(queries))
        # New titles' columns are rescored from metadata through autograd: the general path.
        pos_vectors, neg_vectors = vectors[:len(positives)], vectors[len(positives):]
        new = new_titles.row_is_new(positives).unsqueeze(1)
        pos_vectors = torch.where(new, new_titles.metadata(positives), pos_vectors)
        pos_logits = (queries * pos_vectors).sum(-1, keepdim=True) - pos_offset.unsqueeze(-1)  # [N, 1]
        neg_logits = new_titles.rescore(queries, queries @ neg_vectors.T, negatives) + offset.to(queries.dtype)
        logits = torch.cat([pos_logits, neg_logits], dim=1).float()
        first = torch.zeros(len(positives), dtype=torch.long, device=logits.device)
        return softmax_cross_entropy(logits, first, (rows, cols + 1))

    def describe(self) -> str:
        return f"sampled-softmax[{self.sampler.describe()}{', logQ' if self.logq else ''}]"
