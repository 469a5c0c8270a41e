"""Cost of the decoding head as the catalog grows: forward+backward seconds per step.

Rows per catalog size (10k, 100k, 1M titles): backbone alone (hidden.sum() as the loss), full
softmax with an unprojected head (item_dim = n_embd), sampled softmax unprojected, and sampled
softmax with the projected head (n_embd -> item_dim). Each row carries the title tables' gradients
as a training run with that loss would (TrainConfig.sparse_grads "auto": sparse, made dense before
the optimizer, for the sampled loss and the backbone beside it; dense for the full softmax), timed
up to the dense gradients; "sampled+projected-dense" keeps them dense for comparison. The sampled
rows draw --negatives-frac of the catalog uniformly (10,000 at 1M), so their cost grows with it;
"sampled+projected-trainer" draws what the trainer does (TrainConfig.sampler and num_negatives:
in-batch + 512 uniform, however large the catalog), printed as trainer/backbone. Each row is
timed right after an untimed step of its own, the full softmax in a block of its own (see
interleaved_times). Targets at 1M: sampled+projected <= 0.10x full and <= 1.25x backbone alone.

    python benchmarks/head_cost.py [--preset 8M --batch 8 --seq 50 --negatives-frac 0.01]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from genrec.events import NUM_RESERVED
from genrec.model import (FullSoftmaxLoss, GenerativeRecommender, SampledSoftmaxLoss, UniformSampler,
                          build_sampler, preset_config)
from genrec.training import TrainConfig, densify_grads, keep_freed_memory


def step_seconds(model: GenerativeRecommender, loss, items, types, gaps, seed: int) -> float:
    """Seconds of one forward+backward, up to dense gradients."""
    model.zero_grad(set_to_none=True)
    started = time.perf_counter()
    hidden = model(items, types, gaps)
    if loss is None:
        out = hidden.sum()
    else:
        flat = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        queries = model.queries(flat, torch.zeros(len(flat), dtype=torch.long))
        out = loss(queries, items[:, 1:].reshape(-1), model.item_vectors, model.config.num_items,
                   torch.Generator().manual_seed(seed)).mean()
    out.backward()
    densify_grads(model)  # as the trainer does before its optimizer step
    return time.perf_counter() - started


def interleaved_times(steps: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per named step in each of `repeats` rounds through every row (round 0 warms up): on
    a shared machine the speed drifts by 10-30% over a minute, and timing one row after another let
    that drift into the ratios (the same code measured 1.2x and 1.8x backbone). Inside a round each
    row runs an untimed step before its timed one, so the timed step finds the memory as its own
    kind of step leaves it, as in a training run that repeats one loss. Timed straight after another
    row, it paid for that row's memory: a step that frees over a GiB (the 1M-title unprojected
    table's gradient) hands the heap back to the OS (keep_freed_memory's trim threshold), and the
    next row page-faults its buffers afresh (sampled + projected right after it: 1.31-1.37x the
    backbone; after its own step: 1.19-1.20x, the same code, benchmarks/HISTORY.md)."""
    times = {name: [] for name in steps}
    for i in range(repeats + 1):
        for name, step in steps.items():
            step(i)
            seconds = step(i)
            if i:
                times[name].append(seconds)
    return times


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def consecutive_median(step, repeats: int) -> float:
    """Median seconds of `repeats` steps in a row after one warm-up: for the full softmax, whose
    1M-title step (~15 s, [rows, catalog] buffers of GBs) would double the run if interleaved with
    warm-ups, and whose 0.10x target has a margin (0.012-0.016x measured) no drift can close."""
    step(0)
    return median([step(i) for i in range(1, repeats + 1)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="8M")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=50)
    parser.add_argument("--catalogs", default="10000,100000,1000000")
    parser.add_argument("--negatives-frac", type=float, default=0.01, help="uniform negatives as a catalog share")
    parser.add_argument("--proj-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    keep_freed_memory()  # as the trainer does on CPU
    torch.manual_seed(0)
    for catalog in (int(c) for c in args.catalogs.split(",")):
        num_items = catalog + NUM_RESERVED
        n_embd = preset_config(args.preset).n_embd
        items = torch.randint(NUM_RESERVED, num_items, (args.batch, args.seq))
        types, gaps = torch.ones_like(items), torch.zeros_like(items)
        negatives = max(1, int(args.negatives_frac * catalog))
        trainer_sampler = build_sampler(TrainConfig.sampler, num_items, TrainConfig.num_negatives,
                                        torch.ones(num_items))  # the benchmark's titles are uniform
        steps = {}
        for name, item_dim, loss, sparse in (
            ("backbone", args.proj_dim, None, True),
            ("full", n_embd, FullSoftmaxLoss(), False),
            ("sampled", n_embd, SampledSoftmaxLoss(UniformSampler(num_items, negatives)), True),
            ("sampled+projected", args.proj_dim, SampledSoftmaxLoss(UniformSampler(num_items, negatives)), True),
            ("sampled+projected-dense", args.proj_dim, SampledSoftmaxLoss(UniformSampler(num_items, negatives)), False),
            # what `genrec train --config '{"loss": "sampled"}'` draws: its sampler and count, whatever the catalog
            ("sampled+projected-trainer", args.proj_dim, SampledSoftmaxLoss(trainer_sampler), True),
        ):
            model = GenerativeRecommender(preset_config(args.preset, num_items=num_items, max_len=args.seq,
                                                        item_dim=item_dim))
            model.tower.set_sparse_grads(sparse)
            steps[name] = (lambda seed, model=model, loss=loss: step_seconds(model, loss, items, types, gaps, seed))
        full = steps.pop("full")
        times = interleaved_times(steps, args.repeats)
        rows = {name: median(t) for name, t in times.items()} | {"full": consecutive_median(full, args.repeats)}
        # The same ratio round by round (both steps timed within a second): drift cancels in each pair,
        # and the quartiles say how much the machine moved it.
        paired = sorted(a / b for a, b in zip(times["sampled+projected"], times["backbone"]))
        del steps, full, times
        print(json.dumps({
            "catalog": catalog, "preset": args.preset, "tokens_per_step": args.batch * args.seq,
            "negatives": negatives, "trainer_negatives": trainer_sampler.describe(),
            "seconds": {k: round(v, 4) for k, v in rows.items()},
            "sampled+projected/full": round(rows["sampled+projected"] / rows["full"], 4),
            "sampled+projected/backbone": round(rows["sampled+projected"] / rows["backbone"], 4),
            "paired_rounds": {"median": round(median(paired), 4), "q1": round(paired[len(paired) // 4], 4),
                              "q3": round(paired[(3 * len(paired)) // 4], 4)},
            "trainer/backbone": round(rows["sampled+projected-trainer"] / rows["backbone"], 4),
            "targets_met": rows["sampled+projected"] <= 0.10 * rows["full"]
            and rows["sampled+projected"] <= 1.25 * rows["backbone"],
        }), flush=True)


if __name__ == "__main__":
    main()
