"""Training checkpoints: written atomically (a reader sees the old file or the new one, never half of
one) and read back without executing code (torch.load with weights_only)."""
from __future__ import annotations

import glob
import os

import torch

CHECKPOINT_DIR = "checkpoints"


def checkpoint_paths(out_dir: str) -> list[str]:
    """Finished checkpoints, oldest first (temp files never match)."""
    return sorted(glob.glob(os.path.join(out_dir, CHECKPOINT_DIR, "step_*.pt")))


def write_atomic(obj: dict, path: str) -> None:
    """torch.save beside the target, fsync, then rename: a reader sees the old file or the new one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_latest_checkpoint(out_dir: str) -> dict | None:
    """Newest checkpoint that loads (a corrupt one is skipped), without executing code."""
    for path in reversed(checkpoint_paths(out_dir)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a truncated file is just not a good checkpoint
            continue
    return None
