"""Model units: shapes, causality, sizes, heads, item tower masking, losses, samplers, retrieval."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genrec.errors import ConfigError
from genrec.events import NUM_RESERVED, UNK_INDEX
from genrec.model import (PRESETS, FullSoftmaxLoss, GenerativeRecommender, InBatchSampler, MixedSampler, NewTitles,
                          ModelConfig, PopularitySampler, SampledSoftmaxLoss, UniformSampler, backbone_params,
                          build_sampler, preset_config, preset_value, top_k)
from genrec.model.losses import negative_columns, softmax_cross_entropy


def tiny(**kw) -> GenerativeRecommender:
    torch.manual_seed(0)
    base = dict(n_layer=2, n_head=2, n_embd=16, max_len=12, num_items=30, num_tasks=2, mtp_depth=2, item_dim=8)
    base.update(kw)
    return GenerativeRecommender(ModelConfig(**base)).eval()


def inputs(B=3, T=10, V=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(NUM_RESERVED, V, (B, T), generator=g)
    types = torch.randint(1, 3, (B, T), generator=g)
    gaps = torch.randint(0, 32, (B, T), generator=g)
    return items, types, gaps


def test_forward_and_query_shapes():
    model = tiny()
    items, types, gaps = inputs()
    hidden = model(items, types, gaps)
    assert hidden.shape == (3, 10, 16)
    q = model.queries(hidden.reshape(-1, 16), torch.zeros(30, dtype=torch.long))
    assert q.shape == (30, 9)  # item_dim + 1: the constant that picks up each title's bias
    assert model.item_table().shape == (30, 9)


def test_future_events_never_change_earlier_outputs():
    model = tiny()
    items, types, gaps = inputs()
    before = model(items, types, gaps)
    items2, types2, gaps2 = items.clone(), types.clone(), gaps.clone()
    items2[:, 6:] = torch.randint(NUM_RESERVED, 30, (3, 4))
    types2[:, 6:] = 1
    gaps2[:, 6:] = 0
    after = model(items2, types2, gaps2)
    assert torch.allclose(before[:, :6], after[:, :6], atol=1e-6)
    assert not torch.allclose(before[:, 6:], after[:, 6:], atol=1e-4)


def test_padding_at_the_end_does_not_change_real_positions():
    model = tiny()
    items, types, gaps = inputs(B=1, T=6)
    padded = [torch.cat([x, torch.zeros(1, 4, dtype=torch.long)], 1) for x in (items, types, gaps)]
    assert torch.allclose(model(items, types, gaps), model(*padded)[:, :6], atol=1e-6)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_backbone_count_within_ten_percent_of_its_name(name):
    with torch.device("meta"):
        model = GenerativeRecommender(preset_config(name, num_items=1000, num_tasks=3, mtp_depth=2))
    count = model.get_num_params(non_embedding=True)
    assert abs(count / preset_value(name) - 1) <= 0.10
    assert count == backbone_params(model.config.n_layer, model.config.n_embd)
    # item embeddings and heads are not part of the backbone count
    assert model.get_num_params(non_embedding=False) > count


def test_bad_configs_raise_config_errors():
    with pytest.raises(ConfigError):
        preset_config("3M")
    with pytest.raises(ConfigError):
        ModelConfig(n_embd=30, n_head=4)
    with pytest.raises(ConfigError):
        ModelConfig(mask_prob=1.5)
    with pytest.raises(ConfigError):
        ModelConfig(tower_combine="concat")


def test_head_index_uses_last_head_beyond_mtp_depth():
    model = tiny(mtp_depth=2)
    assert model.head_index(1, 0) == 3
    assert model.head_index(1, 2) == 5
    assert model.head_index(1, 7) == 5
    assert model.head_index(0, 1) == 1


def test_residual_mtp_heads_start_as_the_next_event_head_and_never_train_it():
    model = tiny(mtp_depth=2, num_tasks=2).train()
    hidden = torch.randn(5, 16)
    q = model.head_outputs(hidden)  # [5, tasks * depths, item_dim]
    for task in range(2):
        first = q[:, model.head_index(task, 0)]
        assert torch.equal(q[:, model.head_index(task, 1)], first)
        assert torch.equal(q[:, model.head_index(task, 2)], first)
    assert not torch.equal(q[:, model.head_index(0, 0)], q[:, model.head_index(1, 0)])
    # A loss on the delay heads alone trains their corrections, never a next-event slice.
    q[:, [model.head_index(0, 1), model.head_index(1, 2)]].sum().backward()
    grad = model.head.weight.grad.view(2, 3, 8, 16).abs().sum(dim=(2, 3))
    assert torch.equal(grad[:, 0], torch.zeros(2))
    assert grad[0, 1] > 0 and grad[1, 2] > 0 and grad[0, 2] == 0 and grad[1, 1] == 0


def test_independent_mtp_heads_are_separate_projections():
    model = tiny(mtp_depth=1, num_tasks=1, mtp_residual=False)
    hidden = torch.randn(4, 16)
    weight = model.head.weight.view(2, 8, 16)
    q = model.head_outputs(hidden)
    assert torch.allclose(q[:, 1], hidden @ weight[1].T) and not torch.allclose(q[:, 1], q[:, 0])


@pytest.mark.parametrize("combine", ["sum", "fallback"])
def test_masking_leaves_metadata_alone_to_represent_a_title(combine):
    model = tiny(semantic_dim=4, normalize=False, tower_combine=combine)
    assert "tower.oov" not in dict(model.named_parameters())  # nothing to learn "masked titles" from
    with torch.no_grad():
        model.tower.semantic.normal_()
        model.tower.oov_bias.fill_(-0.5)
        model.tower.bias.weight.normal_()
    mask = torch.zeros(30, dtype=torch.bool)
    mask[[5, 9]] = True
    ids = torch.arange(30)
    plain, masked = model.tower(ids), model.tower(ids, mask)
    meta = model.tower.mlp(model.tower.semantic)
    assert torch.allclose(masked[5, :-1], meta[5])
    assert torch.allclose(masked[5, -1], model.tower.oov_bias)  # the bias is collaborative too
    assert torch.allclose(masked[~mask][1:], plain[~mask][1:])  # row 0 is padding
    assert torch.all(masked[0] == 0)
    # a title the model never saw is scored from metadata alone, plus the OOV bias
    vec = torch.randn(2, 4)
    rep = model.tower.represent(torch.tensor([-1, 7]), vec)
    assert torch.allclose(rep[0, :-1], model.tower.mlp(vec[0])) and rep[0, -1] == -0.5
    known_meta = model.tower.mlp(vec[1]) if combine == "sum" else 0  # fallback: the ID part alone
    assert torch.allclose(rep[1, :-1], model.tower.id_embedding.weight[7] + known_meta)
    assert torch.allclose(rep[1, -1], model.tower.bias.weight[7, 0])
    assert torch.allclose(plain[7, :-1], model.tower.id_embedding.weight[7] + (meta[7] if combine == "sum" else 0))
    # UNK in a history (a title outside the vocabulary) reads as an unknown title does, not as its
    # own row, which no training step ever updates
    unk = model.tower(torch.tensor([UNK_INDEX]))
    assert torch.allclose(unk, model.tower.represent(torch.tensor([-1]), model.tower.semantic[UNK_INDEX:UNK_INDEX + 1]))


def test_fallback_tower_trains_metadata_only_through_titles_without_an_id_part():
    """With tower_combine="fallback" a warm title's loss never reaches the metadata MLP (so warm
    titles score as without a tower) and a masked title's does; models saved before the field
    existed load as "sum", which they were trained with."""
    model = tiny(semantic_dim=4, tower_combine="fallback")
    with torch.no_grad():
        model.tower.semantic.normal_()
        model.tower.mlp[-1].weight.normal_()
    ids = torch.arange(NUM_RESERVED, 30)
    model.item_vectors(ids).sum().backward()
    assert all(p.grad is None for p in model.tower.mlp.parameters())
    mask = torch.zeros(30, dtype=torch.bool)
    mask[7] = True
    model.item_vectors(ids, mask).sum().backward()
    assert model.tower.mlp[-1].weight.grad.abs().sum() > 0
    assert ModelConfig.from_saved({"n_layer": 1}).tower_combine == "sum"
    assert model.tower.describe() == "item_tower[id else mlp(4->8), mask_p=0.0]"
    from genrec.training import TrainConfig

    with pytest.raises(ConfigError, match="tower_combine"):  # caught before any process starts
        TrainConfig(tower_combine="concat")


def test_full_softmax_is_cross_entropy_over_real_items():
    torch.manual_seed(0)
    q, table = torch.randn(5, 4), torch.randn(20, 4)
    pos = torch.randint(NUM_RESERVED, 20, (5,))
    expected = F.cross_entropy(q @ table[NUM_RESERVED:].T, pos - NUM_RESERVED, reduction="none")
    assert torch.allclose(FullSoftmaxLoss()(q, pos, lambda ids: table[ids], 20), expected)


def test_full_softmax_gradient_matches_torch_cross_entropy():
    """The loss's own backward (softmax minus one-hot, in place) against autograd through F.cross_entropy,
    with logits large enough that an unstabilised exp would overflow and per-row upstream weights."""
    torch.manual_seed(0)
    logits = (torch.randn(6, 30) * 40).requires_grad_()
    target, weight = torch.randint(0, 30, (6,)), torch.rand(6)
    ours = softmax_cross_entropy(logits * 1.0, target)
    (ours * weight).sum().backward()
    ours_grad, logits.grad = logits.grad.clone(), None
    expected = F.cross_entropy(logits, target, reduction="none")
    (expected * weight).sum().backward()
    assert torch.allclose(ours, expected, atol=1e-5)
    assert torch.allclose(ours_grad, logits.grad, atol=1e-6)
    twice = softmax_cross_entropy(logits * 1.0, target).sum()
    twice.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        twice.backward()


def test_softmax_cross_entropy_leaves_out_entries_and_survives_an_underflowed_target():
    """Entries left out in place inside the loss match F.cross_entropy over -inf logits, gradient
    included; a target whose softmax underflows to 0 still gets its finite loss (log-sum-exp)."""
    torch.manual_seed(0)
    logits = torch.randn(4, 12).requires_grad_()
    target = torch.tensor([0, 5, 7, 11])
    rows, cols = torch.tensor([0, 0, 2, 3]), torch.tensor([3, 4, 3, 0])
    far = torch.zeros(4, 12)
    far[1, 5] = -200.0  # row 1's target: exp underflows in float32
    weight = torch.rand(4)
    ours = softmax_cross_entropy(logits + far, target, (rows, cols))
    (g_ours,) = torch.autograd.grad((ours * weight).sum(), logits)
    left_out = torch.zeros(4, 12, dtype=torch.bool)
    left_out[rows, cols] = True
    expected = F.cross_entropy((logits + far).masked_fill(left_out, float("-inf")), target, reduction="none")
    (g_expected,) = torch.autograd.grad((expected * weight).sum(), logits)
    assert torch.isfinite(ours).all() and ours[1] > 190
    assert torch.allclose(ours, expected, atol=1e-5)
    assert torch.allclose(g_ours, g_expected, atol=1e-6)
    assert (g_ours[rows, cols] == 0).all()


def test_full_softmax_leaves_seen_titles_out_of_their_rows_only():
    """A seen title drops out of its own row's softmax (loss and gradient as if it were not in the
    catalog) and stays in every other row's."""
    torch.manual_seed(0)
    q, table = torch.randn(3, 4, requires_grad=True), torch.randn(12, 4)
    pos = torch.tensor([NUM_RESERVED + 1, NUM_RESERVED + 2, NUM_RESERVED + 3])
    seen = (torch.tensor([0, 0, 2]), torch.tensor([NUM_RESERVED + 4, NUM_RESERVED + 5, NUM_RESERVED + 4]))
    ours = FullSoftmaxLoss()(q, pos, lambda ids: table[ids], 12, seen=seen)
    logits = q @ table[NUM_RESERVED:].T
    out = torch.zeros_like(logits, dtype=torch.bool)
    out[seen[0], seen[1] - NUM_RESERVED] = True
    expected = F.cross_entropy(logits.masked_fill(out, float("-inf")), pos - NUM_RESERVED, reduction="none")
    assert torch.allclose(ours, expected, atol=1e-6)
    plain = FullSoftmaxLoss()(q, pos, lambda ids: table[ids], 12)
    assert ours[1] == plain[1] and (ours[[0, 2]] < plain[[0, 2]]).all()  # fewer rivals, lower loss
    (g_ours,) = torch.autograd.grad(ours.sum(), q)
    (g_expected,) = torch.autograd.grad(expected.sum(), q)
    assert torch.allclose(g_ours, g_expected, atol=1e-6)


def test_seen_pairs_are_the_titles_before_each_target_except_the_target():
    from genrec.training import seen_pairs

    r = NUM_RESERVED
    items = torch.tensor([[r, r + 1, r + 2, 0], [r + 3, r + 3, 0, 0]])
    w, t = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 1])
    rows, ids = seen_pairs(items, w, t, positives=torch.tensor([r + 2, r + 1, r + 3]))
    got = sorted(zip(rows.tolist(), (ids - r).tolist()))
    # row 0 saw titles 0, 1; row 1 saw 0, 1, 2 but 1 is its target (a rewatch stays a positive);
    # row 2 saw only title 3, its own target; padding is never a title
    assert got == [(0, 0), (0, 1), (1, 0), (1, 2)]


class FixedSampler(UniformSampler):
    def __init__(self, ids, log_q):
        super().__init__(100, len(ids))
        self.ids, self.lq = torch.tensor(ids), dict(log_q)

    def sample(self, positives, generator=None):
        return self.ids

    def log_q(self, ids, n_positives):
        return torch.tensor([self.lq[int(i)] for i in ids])


def test_sampled_softmax_leaves_seen_titles_out_as_the_full_softmax_does():
    """Sampling every catalog title once (log Q 0) with a seen title repeated among the negatives:
    each copy drops out of its own row only, so loss and gradient equal the full softmax's."""
    torch.manual_seed(0)
    q, table = torch.randn(3, 4, requires_grad=True), torch.randn(12, 4)
    pos = torch.tensor([NUM_RESERVED + 1, NUM_RESERVED + 2, NUM_RESERVED + 3])
    seen = (torch.tensor([0, 0, 2]), torch.tensor([NUM_RESERVED + 4, NUM_RESERVED + 5, NUM_RESERVED + 4]))
    catalog = list(range(NUM_RESERVED, 12))
    everything = FixedSampler(catalog, {i: 0.0 for i in catalog})
    full = FullSoftmaxLoss()(q, pos, lambda ids: table[ids], 12, seen=seen)
    sampled = SampledSoftmaxLoss(everything, logq=False)(q, pos, lambda ids: table[ids], 12, seen=seen)
    assert torch.allclose(sampled, full, atol=1e-6)
    (g_sampled,) = torch.autograd.grad(sampled.sum(), q)
    (g_full,) = torch.autograd.grad(full.sum(), q)
    assert torch.allclose(g_sampled, g_full, atol=1e-6)
    # a second copy of a seen title adds nothing to its row, and a rival to the rows that did not see it
    doubled = FixedSampler(catalog + [NUM_RESERVED + 4], {i: 0.0 for i in catalog})
    again = SampledSoftmaxLoss(doubled, logq=False)(q, pos, lambda ids: table[ids], 12, seen=seen)
    assert torch.allclose(again[[0, 2]], full[[0, 2]], atol=1e-6) and again[1] > full[1]


def test_negative_columns_finds_each_rows_positive_and_seen_titles_among_the_negatives():
    """Titles below, between and above the sorted negatives find no column; those among them find
    their own, per row (the binary search must not match a neighbour)."""
    negatives = torch.tensor([10, 20, 30])
    positives = torch.tensor([20, 5, 35, 30])
    rows, cols = negative_columns(positives, negatives)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (3, 2)]
    seen = (torch.tensor([1, 1, 2, 2, 3]), torch.tensor([10, 25, 30, 99, 0]))
    rows, cols = negative_columns(positives, negatives, seen)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0), (2, 2), (3, 2)]


def test_sampled_softmax_subtracts_log_q_and_masks_the_positive():
    torch.manual_seed(0)
    q, table = torch.randn(2, 4), torch.randn(10, 4)
    pos = torch.tensor([4, 6])
    lq = {4: math.log(0.5), 5: math.log(0.1), 6: math.log(2.0), 7: math.log(0.3)}
    lookup = lambda ids: table[ids]  # noqa: E731
    loss = SampledSoftmaxLoss(FixedSampler([5, 6, 7], lq))(q, pos, lookup, 10)
    for r in range(2):
        cands = [int(pos[r])] + [i for i in (5, 6, 7) if i != int(pos[r])]
        logits = torch.stack([q[r] @ table[i] - lq[i] for i in cands])
        assert torch.allclose(loss[r], torch.logsumexp(logits, 0) - logits[0], atol=1e-6)
    no_q = SampledSoftmaxLoss(FixedSampler([5, 6, 7], lq), logq=False)(q, pos, lookup, 10)
    assert not torch.allclose(loss, no_q)


def test_sampled_softmax_values_and_gradients_match_plain_autograd():
    """The sampled loss (one logits buffer, a hand-written backward) against the same loss spelled
    out with autograd ops: repeated negatives (+log copies), log Q, seen titles, negatives equal to a
    row's positive; gradients for the queries and every item vector; and under bf16 autocast, where
    the matmuls run in bf16 and the softmax in fp32."""
    torch.manual_seed(0)
    q, table = torch.randn(5, 6, requires_grad=True), torch.randn(20, 6, requires_grad=True)
    pos = torch.tensor([4, 5, 6, 7, 4])
    negatives = [5, 8, 8, 9, 12, 4, 8]
    lq = {i: math.log(0.1 * (i % 3 + 1)) for i in range(20)}
    seen = (torch.tensor([1, 3, 3]), torch.tensor([9, 12, 8]))
    weights = torch.rand(5)

    def reference() -> torch.Tensor:
        rows = []
        for r in range(5):
            left_out = {int(pos[r])} | {int(i) for row, i in zip(*seen) if int(row) == r}
            cands = sorted(set(negatives) - left_out)
            logits = [q[r] @ table[pos[r]] - lq[int(pos[r])]]
            logits += [q[r] @ table[i] - lq[i] + math.log(negatives.count(i)) for i in cands]
            logits = torch.stack(logits)
            rows.append(torch.logsumexp(logits, 0) - logits[0])
        return torch.stack(rows)

    def loss_and_grads(loss_fn) -> tuple[torch.Tensor, ...]:
        loss = loss_fn()
        return (loss.float(), *torch.autograd.grad((loss * weights).sum(), (q, table)))

    ours = lambda: SampledSoftmaxLoss(FixedSampler(negatives, lq))(q, pos, lambda ids: table[ids], 20, seen=seen)  # noqa: E731
    expected = loss_and_grads(reference)
    for got, want in zip(loss_and_grads(ours), expected):
        assert got.dtype == want.dtype and torch.allclose(got, want, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss_and_grads(ours)
    for got, want in zip(low, expected):
        assert got.dtype == want.dtype and torch.allclose(got, want, atol=0.05, rtol=0.02)
    assert not torch.equal(low[1], expected[1])  # the bf16 matmuls did run


def test_new_titles_are_scored_from_metadata_as_positives_and_negatives():
    """Title 4 launched at t=100: for a row at t=105 (seconds 10) it is new, whether positive or
    negative, and its metadata vector stands in for its full one; at t=200 it is not."""
    torch.manual_seed(0)
    q, table, meta = torch.randn(3, 4), torch.randn(12, 4), torch.randn(12, 4, requires_grad=True)
    pos = torch.tensor([4, 9, 4])
    launch = torch.full((12,), torch.iinfo(torch.int64).max)
    launch[4] = 100
    new = NewTitles(lambda ids: meta[ids], launch, torch.tensor([105, 105, 200]), seconds=10)
    lookup = lambda ids: table[ids]  # noqa: E731

    def vec(r, i):
        return meta[i] if (i == 4 and r < 2) else table[i]

    full = FullSoftmaxLoss()(q, pos, lookup, 12, new_titles=new)
    for r in range(3):
        logits = torch.stack([q[r] @ vec(r, i) for i in range(NUM_RESERVED, 12)])
        assert torch.allclose(full[r], torch.logsumexp(logits, 0) - logits[pos[r] - NUM_RESERVED], atol=1e-5)
    full.sum().backward()
    assert meta.grad[4].abs().sum() > 0 and meta.grad[5].abs().sum() == 0
    lq = {i: 0.0 for i in range(12)}
    sampled = SampledSoftmaxLoss(FixedSampler([4, 5, 9], lq), logq=False)(q, pos, lookup, 12, new_titles=new)
    for r in range(3):
        logits = torch.stack([q[r] @ vec(r, int(pos[r]))] + [q[r] @ vec(r, i) for i in (4, 5, 9) if i != int(pos[r])])
        assert torch.allclose(sampled[r], torch.logsumexp(logits, 0) - logits[0], atol=1e-5)


def test_log_q_correction_is_a_no_op_for_a_uniform_sampler():
    torch.manual_seed(0)
    q, table, pos = torch.randn(6, 4), torch.randn(50, 4), torch.randint(NUM_RESERVED, 50, (6,))
    lookup = lambda ids: table[ids]  # noqa: E731
    a = SampledSoftmaxLoss(UniformSampler(50, 16), logq=True)(q, pos, lookup, 50, torch.Generator().manual_seed(1))
    b = SampledSoftmaxLoss(UniformSampler(50, 16), logq=False)(q, pos, lookup, 50, torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, atol=1e-5)


def test_samplers_expected_counts():
    counts = torch.tensor([0, 0, 0, 10, 30, 60])
    pop = PopularitySampler(counts, num=5)
    assert torch.allclose(pop.log_q(torch.tensor([5]), 1).exp(), torch.tensor([5 * 0.6]))
    assert int(pop.sample(torch.tensor([3]), torch.Generator().manual_seed(0)).min()) >= NUM_RESERVED
    inb = InBatchSampler(counts)
    assert torch.equal(inb.sample(torch.tensor([5, 3, 5, 0])), torch.tensor([3, 5]))
    assert torch.allclose(inb.log_q(torch.tensor([3]), 4).exp(), torch.tensor([1 - 0.9**4], dtype=torch.float32))
    mix = build_sampler("in-batch+uniform", 6, 3, counts)
    assert isinstance(mix, MixedSampler) and mix.describe() == "in-batch+uniform(3)"
    expected = inb.log_q(torch.tensor([4]), 4).exp() + 3 / 3
    assert torch.allclose(mix.log_q(torch.tensor([4]), 4).exp(), expected)
    top = build_sampler("top+uniform", 6, 2, counts)  # the 2 most frequent every time, + 2 uniform draws
    drawn = top.sample(torch.tensor([3]), torch.Generator().manual_seed(0))
    assert drawn[:2].tolist() == [5, 4] and len(drawn) == 4 and top.describe() == "top(2)+uniform(2)"
    assert torch.allclose(top.log_q(torch.tensor([5, 3]), 1).exp(), torch.tensor([1 + 2 / 3, 2 / 3]), atol=1e-6)
    with pytest.raises(ConfigError):
        build_sampler("hard", 6, 3, counts)


def test_samplers_moved_once_keep_their_tables_on_the_device_and_draw_there():
    """Loss.to moves each sampler's catalog-sized tables once. The meta device stands in for a GPU:
    a table left on the CPU would show up as a CPU tensor below."""
    counts = torch.tensor([0, 0, 0, 10, 30, 60, 5])
    meta = torch.device("meta")
    loss = SampledSoftmaxLoss(build_sampler("popularity+in-batch+top+uniform", 7, 2, counts)).to(meta)
    for sampler in loss.sampler.samplers:
        assert all(t.device == meta for t in vars(sampler).values() if isinstance(t, torch.Tensor))
    positives = torch.tensor([3, 5], device=meta)
    for sampler in loss.sampler.samplers:
        if not isinstance(sampler, InBatchSampler):  # draws the batch's own positives (unique has no meta kernel)
            assert sampler.sample(positives).device == meta
        assert sampler.log_q(positives, 2).device == meta
    assert FullSoftmaxLoss().to(meta).describe() == "full-softmax"


def test_top_k_blocks_and_seen_filter_match_a_plain_sort():
    torch.manual_seed(0)
    q, items = torch.randn(4, 8), torch.randn(103, 8)
    seen = torch.rand(4, 103) < 0.3
    scores, idx = top_k(q, items, 7, seen=seen, block=10)
    full = (q @ items.T).masked_fill(seen, float("-inf"))
    ref_s, ref_i = full.topk(7, dim=1)
    assert torch.equal(idx, ref_i) and torch.allclose(scores, ref_s)
    assert not seen.gather(1, idx).any()


def test_tiny_model_overfits_a_tiny_sequence_set():
    model = tiny(mtp_depth=0, num_tasks=1, dropout=0.0).train()
    items = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10], [20, 19, 18, 17, 16, 15, 14, 13]])
    types, gaps = torch.ones_like(items), torch.zeros_like(items)
    targets = items[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        hidden = model(items, types, gaps)[:, :-1].reshape(-1, 16)
        loss = FullSoftmaxLoss()(model.queries(hidden, torch.zeros(len(hidden), dtype=torch.long)),
                                 targets.reshape(-1), model.item_vectors, 30).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    hidden = model(items, types, gaps)[:, :-1].reshape(-1, 16)
    logits = model.queries(hidden, torch.zeros(len(hidden), dtype=torch.long)) @ model.item_table()[NUM_RESERVED:].T
    assert loss.item() < 0.1
    assert torch.equal(logits.argmax(1) + NUM_RESERVED, targets.reshape(-1))
