"""Metadata embedding: text building, the content-hash cache, and the real MiniLM encoder offline."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec.errors import InputError
from genrec.events import TITLE_SCHEMA
from genrec.semantic import EmbedConfig, embed_metadata, read_embeddings, title_text


def _titles(path, rows):
    pq.write_table(pa.Table.from_pylist(rows, schema=TITLE_SCHEMA), path)


ROWS = [
    {"item_id": "a", "title": "Galaxy Quest", "genres": ["sci-fi", "comedy"], "tags": ["space"], "description": "Actors in space."},
    {"item_id": "b", "title": "Galaxy Quest 2", "genres": ["sci-fi", "comedy"], "tags": ["space"], "description": "More actors in space."},
    {"item_id": "c", "title": "Haunted Cabin", "genres": ["horror"], "tags": ["ghost"], "description": "A curse in the woods."},
]


def test_title_text_skips_missing_fields():
    assert title_text({"title": "X", "genres": None, "tags": [], "description": None}) == "X"
    assert "Genres: sci-fi, comedy" in title_text(ROWS[0])


def test_cache_reuses_unchanged_titles_only(tmp_path):
    _titles(tmp_path / "t.parquet", ROWS)
    first = embed_metadata(str(tmp_path / "t.parquet"), str(tmp_path / "e1.parquet"), EmbedConfig(encoder="hashing"))
    assert first["encoded"] == 3 and first["reused_from_cache"] == 0
    changed = [dict(ROWS[0]), dict(ROWS[1]), {**ROWS[2], "description": "A new description."}]
    _titles(tmp_path / "t2.parquet", changed)
    second = embed_metadata(str(tmp_path / "t2.parquet"), str(tmp_path / "e2.parquet"), EmbedConfig(encoder="hashing"),
                            cache_path=str(tmp_path / "e1.parquet"))
    assert second["encoded"] == 1 and second["reused_from_cache"] == 2
    ids1, v1 = read_embeddings(str(tmp_path / "e1.parquet"))
    ids2, v2 = read_embeddings(str(tmp_path / "e2.parquet"))
    assert ids1 == ids2 == ["a", "b", "c"]
    np.testing.assert_array_equal(v1[:2], v2[:2])
    assert not np.allclose(v1[2], v2[2])


def test_missing_column_and_unreadable_file_name_the_file(tmp_path):
    pq.write_table(pa.table({"item_id": ["a"]}), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="bad.parquet.*title"):
        embed_metadata(str(tmp_path / "bad.parquet"), str(tmp_path / "o.parquet"), EmbedConfig(encoder="hashing"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="junk.parquet"):
        embed_metadata(str(tmp_path / "junk.parquet"), str(tmp_path / "o.parquet"), EmbedConfig(encoder="hashing"))


def test_minilm_offline_puts_similar_titles_close(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _titles(tmp_path / "t.parquet", ROWS)
    result = embed_metadata(str(tmp_path / "t.parquet"), str(tmp_path / "e.parquet"), EmbedConfig(encoder="minilm"))
    assert result["encoder"] == "minilm-l6-v2"
    _, v = read_embeddings(str(tmp_path / "e.parquet"))
    assert v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
