"""Popularity baseline: per-task counts over the (recent) train window."""
from __future__ import annotations

import pytest

from genrec.baselines import PopularityRecommender
from genrec.errors import ConfigError, InputError
from genrec.recommender import History
from tests.test_shadow import write_sequences

DAY = 86400
TRAIN = [
    ("u1", [("a", "play", 1 * DAY), ("a", "play", 2 * DAY), ("b", "add", 3 * DAY), ("c", "play", 30 * DAY)], 0),
    ("u2", [("b", "play", 29 * DAY), ("c", "play", 30 * DAY), ("b", "add", 30 * DAY)], 0),
]
SHADOW = [("u1", [("a", "play", 31 * DAY), ("d", "play", 32 * DAY)], 1)]


def _hist(n=1):
    return [History(items=["a"], event_types=["play"], timestamps=[0])] * n


def test_counts_per_task_and_catalog_order(tmp_path):
    root = write_sequences(tmp_path, SHADOW, TRAIN, cold=("d",))
    pop = PopularityRecommender.from_sequences(root)
    pop.set_catalog(["d", "c", "b", "a"])
    assert pop.score(_hist(2), "play").tolist() == [[0, 2, 1, 2]] * 2
    assert pop.score(_hist(), "add").tolist() == [[0, 0, 2, 0]]
    assert pop.score(_hist(), "unseen-task").tolist() == [[0, 2, 3, 2]]  # all event types
    assert pop.score(_hist(3), "play", delay=2).shape == (3, 4)
    assert "whole train window" in pop.description


def test_recent_window_only_counts_recent_events(tmp_path):
    root = write_sequences(tmp_path, SHADOW, TRAIN)
    pop = PopularityRecommender.from_sequences(root, recent_days=2)  # events from day 28 on
    pop.set_catalog(["a", "b", "c"])
    assert pop.score(_hist(), "play").tolist() == [[0, 1, 2]]
    assert "last 2 days" in pop.description


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="train"):
        PopularityRecommender.from_sequences(str(tmp_path / "missing"))
    root = write_sequences(tmp_path / "empty", SHADOW, [("u1", [], 0)])
    with pytest.raises(InputError, match="no events"):
        PopularityRecommender.from_sequences(root)
    with pytest.raises(ConfigError):
        PopularityRecommender.from_sequences(root, recent_days=0)
    with pytest.raises(ConfigError, match="set_catalog"):
        PopularityRecommender({"play": {"a": 1}}).score(_hist(), "play")
