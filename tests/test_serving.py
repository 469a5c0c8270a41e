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


def test_a_title_outside_the_vocabulary_is_read_from_its_metadata(tmp_path):
    """A history title the model has no row for (launched after training) is read through the
    semantic tower, as it is scored: with a known title's metadata and no ID part, it reads exactly
    as that title; one with no metadata reads otherwise (as the OOV part: test_model checks that UNK
    reads as one)."""
    import dataclasses
    import json
    import os

    import torch
    from safetensors.torch import save_file

    from genrec.model import GenerativeRecommender

    root = chain_data(tmp_path / "data", users=12)
    folder = tiny_model_dir(tmp_path / "model", root)
    with open(os.path.join(folder, "config.json")) as fh:
        card = json.load(fh)
    rec = load_recommender(folder)
    config = dataclasses.replace(rec.model.config, semantic_dim=4)
    torch.manual_seed(0)
    model = GenerativeRecommender(config)
    with torch.no_grad():
        model.tower.set_semantic(torch.randn(config.num_items, 4))
        model.tower.mlp[-1].weight.normal_()  # the metadata branch starts at zero: give it a say
        row = int(rec.vocab.positions(["i3"])[0])
        model.tower.id_embedding.weight[row] = 0.0  # i3 is known, but by its metadata alone
        i3_meta = model.tower.semantic[row].clone()
    card["model"] = dataclasses.asdict(config)
    with open(os.path.join(folder, "config.json"), "w") as fh:
        json.dump(card, fh)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(folder, "model.safetensors"))
    rec = load_recommender(folder)
    catalog = ["i1", "i2", "i3", "new-title"]
    vectors = np.zeros((4, 4), np.float32)
    vectors[3] = i3_meta.numpy()
    rec.set_catalog(catalog, vectors)

    def history(*items):
        return History(list(items), ["play"] * len(items), [100 * (k + 1) for k in range(len(items))])

    new, known = rec.hidden([history("i1", "new-title")]), rec.hidden([history("i1", "i3")])
    torch.testing.assert_close(new, known)
    # outside the catalog and without metadata: nothing but the OOV part to read
    bare = rec.hidden([history("i1", "nobody-knows")])
    assert not torch.allclose(bare, new)
