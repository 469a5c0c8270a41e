"""Popularity: the baseline every candidate must beat when there is no champion yet.

Counts per task (event type) over the train window, optionally only its most recent days (recent
popularity is the stronger and more honest baseline for a catalog that changes weekly). Scores are
the counts, identical for every history, so its ranking ignores the user entirely.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genrec.data import read_split
from genrec.errors import ConfigError, InputError
from genrec.recommender import History, Recommender

ALL_TASKS = ""  # key of the counts over every event type (used for tasks never seen in training)


def count_events(table: pa.Table, recent_days: float | None = None) -> dict[str, dict[str, int]]:
    """{task: {item_id: events}} from a sequences table, plus ALL_TASKS over every type.

    Only events at or after (last train timestamp - recent_days) count when `recent_days` is set.
    """
    flat = pa.table({
        "item": pc.list_flatten(table["items"]),
        "task": pc.list_flatten(table["event_types"]),
        "time": pc.list_flatten(table["timestamps"]),
    })
    if len(flat) == 0:
        raise InputError("train split has no events to count")
    if recent_days is not None:
        cutoff = pc.max(flat["time"]).as_py() - int(recent_days * 86400)
        flat = flat.filter(pc.greater_equal(flat["time"], cutoff))
    grouped = flat.group_by(["task", "item"]).aggregate([("time", "count")])
    counts: dict[str, dict[str, int]] = {ALL_TASKS: {}}
    for task, item, n in zip(grouped["task"].to_pylist(), grouped["item"].to_pylist(),
                             grouped["time_count"].to_pylist()):
        counts.setdefault(task, {})[item] = n
        counts[ALL_TASKS][item] = counts[ALL_TASKS].get(item, 0) + n
    return counts


class PopularityRecommender(Recommender):
    """Scores = per-task event counts in the (recent) train window; unknown titles score 0."""

    tasks: tuple[str, ...] = ()  # any task: unseen ones fall back to all-event counts

    def __init__(self, counts: Mapping[str, Mapping[str, int]], description: str = "popularity") -> None:
        self.counts = {task: dict(per_item) for task, per_item in counts.items()}
        self.description = description
        self._catalog: list[str] | None = None
        self._vectors: dict[str, np.ndarray] = {}

    @classmethod
    def from_sequences(cls, sequences_dir: str, recent_days: float | None = None) -> "PopularityRecommender":
        """Fit on `<sequences_dir>/train/` (all of it, or only its last `recent_days` days)."""
        if recent_days is not None and recent_days <= 0:
            raise ConfigError(f"recent_days must be positive, got {recent_days}")
        table = read_split(sequences_dir, "train")
        try:
            counts = count_events(table, recent_days)
        except InputError as err:
            raise InputError(f"{sequences_dir}/train: {err}") from None
        window = f"last {recent_days:g} days of train" if recent_days is not None else "whole train window"
        return cls(counts, description=f"popularity ({window}, per-task counts)")

    def set_catalog(self, item_ids: Sequence[str], vectors: np.ndarray | None = None) -> None:
        self._catalog = list(item_ids)
        self._vectors = {}

    def _task_vector(self, task: str) -> np.ndarray:
        """[C] float32 counts for `task` in catalog order (cached per task)."""
        if self._catalog is None:
            raise ConfigError("set_catalog must be called before score")
        if task not in self._vectors:
            per_item = self.counts.get(task) or self.counts.get(ALL_TASKS, {})
            self._vectors[task] = np.fromiter((per_item.get(i, 0) for i in self._catalog),
                                              dtype=np.float32, count=len(self._catalog))
        return self._vectors[task]

    def score(self, histories: Sequence[History], task: str, delay: int = 0) -> np.ndarray:
        """[B, C] float32, a read-only broadcast of the task's counts (no per-user copy)."""
        return np.broadcast_to(self._task_vector(task), (len(histories), len(self._catalog or ())))
