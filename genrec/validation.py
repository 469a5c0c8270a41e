"""Validation of a model on held-out windows: next-event ranks over the whole catalog per task
(optionally with each user's seen titles filtered), summarised and kept per user for the model card
and the shadow comparison."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from genrec.data import Vocabulary, Windows
from genrec.errors import TrainingError
from genrec.events import NUM_RESERVED, UNK_INDEX
from genrec.metrics import per_user_mean, reciprocal_rank, summarize, target_ranks
from genrec.model import GenerativeRecommender


@torch.no_grad()
def evaluate_windows(model: GenerativeRecommender, windows: Windows, seen_table: pa.Table | None,
                     vocab: Vocabulary, tasks: tuple[str, ...], batch_size: int,
                     device: torch.device) -> tuple[dict, pa.Table]:
    """Per-task MRR / Recall@10 / NDCG@10 / full-softmax loss of next-event predictions and a per-user
    table (user_id, task, mrr, loss, n). `seen_table` (the split's sequences) turns on seen filtering."""
    model.eval()
    table = model.item_table()
    catalog = table[NUM_RESERVED:]
    depth = model.config.mtp_depth + 1
    seen_by_user = _seen_sets(seen_table, vocab) if seen_table is not None else None
    ranks, losses, users, task_of = [], [], [], []
    for start in range(0, len(windows), batch_size):
        sl = slice(start, start + batch_size)
        items = torch.from_numpy(windows.items[sl]).to(device)
        hidden = model(items, torch.from_numpy(windows.types[sl]).to(device),
                       torch.from_numpy(windows.gaps[sl]).to(device))
        w, t = np.nonzero(windows.predict[sl])
        if len(w) == 0:
            continue
        task = windows.next_task[sl][w, t]
        target = windows.targets[sl][w, task * depth, t]
        q = model.queries(hidden[torch.from_numpy(w), torch.from_numpy(t)], torch.from_numpy(task * depth).to(device))
        logits = (q @ catalog.T).float()
        known = target != UNK_INDEX
        tgt = np.where(known, target - NUM_RESERVED, -1)
        exclude = None
        if seen_by_user is not None:
            exclude = np.zeros(logits.shape, bool)
            for i, (wi, ti) in enumerate(zip(w, t)):
                exclude[i, _seen_before(seen_by_user, windows, start + wi, ti)] = True
        ranks.append(target_ranks(logits.cpu().numpy(), tgt, exclude))
        ce = torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.maximum(tgt, 0)), reduction="none")
        losses.append(np.where(known, ce.cpu().numpy(), np.nan))
        users.append(windows.users[sl][w])
        task_of.append(task)
    model.train()
    if not ranks:
        raise TrainingError("validation split has no target events to score")
    ranks, losses = np.concatenate(ranks), np.concatenate(losses)
    users, task_of = np.concatenate(users), np.concatenate(task_of)
    metrics, rows = {}, {"user_id": [], "task": [], "mrr": [], "loss": [], "n": []}
    for i, name in enumerate(tasks):
        sel = task_of == i
        if not sel.any():
            continue
        m = summarize(ranks[sel], k=10)
        m["loss"] = float(np.nanmean(losses[sel])) if np.isfinite(losses[sel]).any() else float("nan")
        metrics[name] = m
        uniq, mrr_u = per_user_mean(reciprocal_rank(ranks[sel]), users[sel])
        loss_vals = np.nan_to_num(losses[sel], nan=0.0)
        _, loss_u = per_user_mean(loss_vals, users[sel])
        _, n_u = np.unique(users[sel], return_counts=True)
        rows["user_id"] += [str(u) for u in uniq]
        rows["task"] += [name] * len(uniq)
        rows["mrr"] += mrr_u.tolist()
        rows["loss"] += loss_u.tolist()
        rows["n"] += n_u.tolist()
    per_user = pa.table({"user_id": pa.array(rows["user_id"], pa.string()), "task": pa.array(rows["task"], pa.string()),
                         "mrr": pa.array(rows["mrr"], pa.float64()), "loss": pa.array(rows["loss"], pa.float64()),
                         "n": pa.array(rows["n"], pa.int64())})
    return metrics, per_user


def _seen_sets(table: pa.Table, vocab: Vocabulary) -> dict[str, np.ndarray]:
    """user -> [n] item indices of the whole sequence (for seen filtering)."""
    out = {}
    for user, items in zip(table["user_id"].to_pylist(), table["items"].to_pylist()):
        out[user] = vocab.lookup(items)
    return out


def _seen_before(seen: dict, windows: Windows, w: int, t: int) -> np.ndarray:
    """Catalog positions of the titles the user had up to and including window position t."""
    idx = seen[windows.users[w]][: windows.starts[w] + t + 1]
    return idx[idx >= NUM_RESERVED] - NUM_RESERVED
