"""The one interface shadow evaluation scores: anything that ranks a catalog for a history.

The trained transformer, the popularity baseline and any future model implement it, so evaluation
never knows which one it holds.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class History:
    """One user's events before a request, oldest first (parallel lists)."""

    items: Sequence[str]
    event_types: Sequence[str]
    timestamps: Sequence[int]
    request_time: int | None = None  # epoch seconds of the request; None means just after the last event


class Recommender(abc.ABC):
    """Scores every catalog title for a batch of histories."""

    #: One line saying what this is (used in reports, model cards and run names).
    description: str = ""
    #: Event types (tasks) this recommender can score; an empty tuple means any task.
    tasks: tuple[str, ...] = ()

    @abc.abstractmethod
    def set_catalog(self, item_ids: Sequence[str], vectors: np.ndarray | None = None) -> None:
        """Fix the titles to score. `vectors` [C, D] float32 are metadata embeddings aligned with
        `item_ids` (rows of zeros where a title has none); models without a semantic tower ignore them."""

    @abc.abstractmethod
    def score(self, histories: Sequence[History], task: str, delay: int = 0) -> np.ndarray:
        """[B, C] float32 scores, higher is better, in catalog order. `delay` is the number of
        requests the result will be cached for; models with multi-token heads use the aligned one."""

    def score_heads(self, histories: Sequence[History], heads: Sequence[tuple[str, int]]) -> list[np.ndarray]:
        """Scores for several (task, delay) pairs on the same histories, in `heads` order, each [B, C].

        Shadow replay asks for every task and delay of each history; a model with a shared backbone
        overrides this to encode each history once instead of once per pair."""
        return [self.score(histories, task, delay) for task, delay in heads]
