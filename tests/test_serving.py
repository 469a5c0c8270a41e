"""Serving a model folder: several heads from one batched backbone pass equal scoring each history
alone, head by head (padding, batching and head selection change nothing)."""
import numpy as np

from genrec.model.serving import load_recommender
from genrec.recommender import History
from tests.test_shadow import chain_data, tiny_model_dir


def test_score_heads_equals_scoring_each_history_alone(tmp_path):
    root = chain_data(tmp_path / "data", users=12)
    rec = load_recommender(tiny_model_dir(tmp_path / "model", root))
    rec.batch_size = 3  # several batches
    items = ["i1", "i2", "i3", "i4", "i5"]
    histories = [History(items[: n + 1], ["play"] * (n + 1), list(range(100, 100 + 60 * (n + 1), 60)))
                 for n in range(5)] + [History(["unknown-title"], ["play"], [5])]
    rec.set_catalog(items + ["unknown-title"])
    heads = [("play", 0), ("play", 1), ("play", 3)]
    together = rec.score_heads(histories, heads)
    assert len(together) == len(heads)
    for (task, delay), scores in zip(heads, together):
        assert scores.shape == (len(histories), 6) and scores.dtype == np.float32
        alone = np.concatenate([rec.score([h], task, delay) for h in histories])
        np.testing.assert_allclose(scores, alone, rtol=1e-4, atol=1e-5)
