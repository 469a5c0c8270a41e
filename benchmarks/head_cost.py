"""Cost of the decoding head as the catalog grows: forward+backward seconds per step.

Rows per catalog size (10k, 100k, 1M titles): backbone alone (hidden.sum() as the loss), full
softmax with an unprojected head (item_dim = n_embd), sampled softmax unprojected, and sampled
softmax with the projected head (n_embd -> item_dim). Each row carries the title tables' gradients
as a training run with that loss would (TrainConfig.sparse_grads "auto": sparse, made dense before
the optimizer, for the sampled loss and the backbone beside it; dense for the full softmax), timed
up to the dense gradients; "sampled+projected-dense" keeps them dense for comparison. Targets at
1M: sampled+projected <= 0.10x full and <= 1.25x backbone alone.

    python benchmarks/head_cost.py [--preset 8M --batch 8 --seq 50 --negatives-frac 0.01]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from genrec.events import NUM_RESERVED
from genrec.model import (FullSoftmaxLoss, GenerativeRecommender, SampledSoftmaxLoss, UniformSampler,
                          preset_config)
from genrec.training import densify_grads, keep_freed_memory


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


def interleaved_medians(steps: dict, repeats: int) -> dict:
    """Median seconds per named step, taking one step of each in turn per round (round 0 warms
    up): on a shared machine the speed drifts by 10-30% over a minute, and timing one row after
    another let that drift into the ratios (the same code measured 1.2x and 1.8x backbone)."""
    times = {name: [] for name in steps}
    for i in range(repeats + 1):
        for name, step in steps.items():
            seconds = step(i)
            if i:
                times[name].append(seconds)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


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
        steps = {}
        for name, item_dim, loss, sparse in (
            ("backbone", args.proj_dim, None, True),
            ("full", n_embd, FullSoftmaxLoss(), False),
            ("sampled", n_embd, SampledSoftmaxLoss(UniformSampler(num_items, negatives)), True),
            ("sampled+projected", args.proj_dim, SampledSoftmaxLoss(UniformSampler(num_items, negatives)), True),
            ("sampled+projected-dense", args.proj_dim, SampledSoftmaxLoss(UniformSampler(num_items, negatives)), False),
        ):
            model = GenerativeRecommender(preset_config(args.preset, num_items=num_items, max_len=args.seq,
                                                        item_dim=item_dim))
            model.tower.set_sparse_grads(sparse)
            steps[name] = (lambda seed, model=model, loss=loss: step_seconds(model, loss, items, types, gaps, seed))
        rows = interleaved_medians(steps, args.repeats)
        del steps
        print(json.dumps({
            "catalog": catalog, "preset": args.preset, "tokens_per_step": args.batch * args.seq,
            "negatives": negatives, "seconds": {k: round(v, 4) for k, v in rows.items()},
            "sampled+projected/full": round(rows["sampled+projected"] / rows["full"], 4),
            "sampled+projected/backbone": round(rows["sampled+projected"] / rows["backbone"], 4),
            "targets_met": rows["sampled+projected"] <= 0.10 * rows["full"]
            and rows["sampled+projected"] <= 1.25 * rows["backbone"],
        }), flush=True)


if __name__ == "__main__":
    main()
