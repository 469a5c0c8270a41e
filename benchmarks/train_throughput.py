"""Training throughput per preset: events (tokens) per second on this machine, and MFU in bf16
on a GPU when one is present (nanoGPT's estimate: 6N + 12 L T C FLOPs per token, backbone only).

    python benchmarks/train_throughput.py [--presets 50K,200K,500K,1M,2M,8M --batch 16 --seq 50]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from genrec.events import NUM_RESERVED
from genrec.model import GenerativeRecommender, SampledSoftmaxLoss, UniformSampler, preset_config
from genrec.training import training_autocast

# Dense bf16 peak FLOP/s by device name fragment (vendor data sheets, no sparsity).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def measure(preset: str, batch: int, seq: int, catalog: int, negatives: int, steps: int, device: torch.device,
            precision: str = "auto") -> dict:
    num_items = catalog + NUM_RESERVED
    model = GenerativeRecommender(preset_config(preset, num_items=num_items, max_len=seq, num_tasks=1)).to(device)
    loss_fn = SampledSoftmaxLoss(UniformSampler(num_items, negatives))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    items = torch.randint(NUM_RESERVED, num_items, (batch, seq), device=device)
    types, gaps = torch.ones_like(items), torch.zeros_like(items)
    autocast = training_autocast(precision, device)
    gen = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        with autocast:
            hidden = model(items, types, gaps)
            flat = hidden[:, :-1].reshape(-1, hidden.shape[-1])
            q = model.queries(flat, torch.zeros(len(flat), dtype=torch.long, device=device))
            loss = loss_fn(q, items[:, 1:].reshape(-1), model.item_vectors, num_items, gen).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    tokens_per_s = batch * seq / seconds
    row = {"preset": preset, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "threads": torch.get_num_threads(), "precision": precision,
           "backbone_params": model.get_num_params(), "batch": batch, "seq": seq,
           "step_s": round(seconds, 4), "tokens_per_s": round(tokens_per_s, 1)}
    if device.type == "cuda":
        peak = next((v for k, v in PEAK_BF16.items() if k in row["device"]), None)
        if peak:
            row["mfu_bf16"] = round(model.flops_per_token() * tokens_per_s / peak, 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="50K,200K,500K,1M,2M,8M")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=50)
    parser.add_argument("--catalog", type=int, default=10_000)
    parser.add_argument("--negatives", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", default="auto", help="auto (bf16 on a GPU, fp32 on a CPU) | bf16 | fp32")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for preset in args.presets.split(","):
        print(json.dumps(measure(preset, args.batch, args.seq, args.catalog, args.negatives, args.steps, device,
                                  args.precision)),
              flush=True)


if __name__ == "__main__":
    main()
