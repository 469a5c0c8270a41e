"""Top-k over a whole catalog, a block of titles at a time, so memory stays [B, block]."""
from __future__ import annotations

import torch


@torch.no_grad()
def top_k(queries: torch.Tensor, items: torch.Tensor, k: int, seen: torch.Tensor | None = None,
          block: int = 65_536) -> tuple[torch.Tensor, torch.Tensor]:
    """queries [B, D], items [C, D], seen [B, C] bool (filtered out when given) ->
    (scores [B, k] float, indices [B, k] long into items), best first."""
    k = min(k, items.shape[0])
    best_s = torch.full((queries.shape[0], 0), float("-inf"), device=queries.device)
    best_i = torch.zeros((queries.shape[0], 0), dtype=torch.long, device=queries.device)
    for start in range(0, items.shape[0], block):
        scores = queries @ items[start:start + block].T
        if seen is not None:
            scores = scores.masked_fill(seen[:, start:start + block], float("-inf"))
        idx = torch.arange(start, start + scores.shape[1], device=queries.device).expand_as(scores)
        s, pos = torch.cat([best_s, scores], 1).topk(k, dim=1)
        best_i = torch.cat([best_i, idx], 1).gather(1, pos)
        best_s = s
    return best_s, best_i
