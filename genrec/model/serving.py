"""A trained model folder as a `Recommender`: what shadow evaluation and serving call.

The model folder carries its own vocabulary, so a later run with a different catalog still scores
with it: titles the model knows use their ID embedding (+ metadata), others metadata + OOV vector,
in the catalog it scores and in the histories it reads alike.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import torch

from genrec.data import Vocabulary, gap_buckets, read_vocabulary
from genrec.errors import ConfigError, InputError
from genrec.events import MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE, UNK_INDEX, VOCAB_FILE
from genrec.model.config import ModelConfig
from genrec.model.ensemble import MemberEnsemble, build_model
from genrec.model.retrieval import top_k
from genrec.model.transformer import GenerativeRecommender
from genrec.recommender import History, Recommender


class TransformerRecommender(Recommender):
    def __init__(self, model: GenerativeRecommender | MemberEnsemble, vocab: Vocabulary, tasks: Sequence[str], description: str,
                 semantic: dict[str, np.ndarray] | None = None, batch_size: int = 256) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.tasks = tuple(tasks)
        self.description = description
        self._semantic = semantic or {}
        self._catalog: torch.Tensor | None = None
        self.batch_size = batch_size

    @torch.no_grad()
    def set_catalog(self, item_ids: Sequence[str], vectors: np.ndarray | None = None) -> None:
        """Catalog table [C, item_dim]; metadata vectors come from `vectors`, else from the
        embeddings file given at load time, else from the model's own copy (known titles)."""
        ids = list(item_ids)
        positions = torch.from_numpy(self.vocab.positions(ids))
        tower = self.model.tower
        vec = None
        if tower.mlp is not None:
            dim = self.model.config.semantic_dim
            stored = tower.semantic[positions.clamp(min=0)] * (positions >= 0).unsqueeze(-1)
            vec = stored.clone()
            if self._semantic:
                extra = self._file_metadata(ids)
                have = extra.abs().sum(1) > 0
                vec[have] = extra[have]
            if vectors is not None:
                given = torch.as_tensor(np.asarray(vectors, np.float32))
                if given.shape != (len(ids), dim):
                    raise ConfigError(f"catalog vectors have shape {tuple(given.shape)}, expected ({len(ids)}, {dim})")
                have = given.abs().sum(1) > 0
                vec[have] = given[have]
        self._catalog = self.model.represent_items(positions, vec)
        self._catalog_row = {item: i for i, item in enumerate(ids)}

    def _head(self, task: str, delay: int) -> int:
        if task not in self.tasks:
            raise ConfigError(f"task {task!r} is not one of this model's tasks {self.tasks}")
        return self.model.head_index(self.tasks.index(task), delay)

    @torch.no_grad()
    def hidden(self, histories: Sequence[History]) -> torch.Tensor:
        """[B, n_embd] backbone state after each history's last event (shared by every head)."""
        cfg = self.model.config
        L = cfg.max_len
        B = len(histories)
        items = np.zeros((B, L), np.int64)
        types = np.zeros((B, L), np.int64)
        gaps = np.zeros((B, L), np.int64)
        last = np.zeros(B, np.int64)
        task_index = {t: i + 1 for i, t in enumerate(self.tasks)}
        outside: list[tuple[int, int, str]] = []  # (row, position, id) of titles the vocabulary lacks
        for b, h in enumerate(histories):
            n = min(len(h.items), L)
            if n == 0:
                continue
            ids = [str(i) for i in h.items[-n:]]
            items[b, :n] = self.vocab.lookup(ids)
            outside += [(b, t, ids[t]) for t in np.flatnonzero(items[b, :n] == UNK_INDEX)]
            types[b, :n] = [task_index.get(t, 0) for t in h.event_types[-n:]]
            gaps[b, :n] = gap_buckets(np.asarray(h.timestamps[-(n + 1):], np.int64), cfg.time_buckets)[-n:]
            last[b] = n - 1
        items_t = torch.from_numpy(items)
        vectors = None
        if outside and self.model.tower.mlp is not None:
            # A title launched after training is read from its metadata, as it is scored.
            vectors = self.model.input_vectors(self.model.item_vectors(items_t)).clone()
            rows, cols, ids = zip(*outside)
            vectors[list(rows), list(cols)] = self._outside_vectors(list(ids))
        hidden = self.model(items_t, torch.from_numpy(types), torch.from_numpy(gaps), vectors=vectors)
        return hidden[torch.arange(B), torch.from_numpy(last)]

    @torch.no_grad()
    def _outside_vectors(self, ids: list[str]) -> torch.Tensor:
        """[N, input_dim] input vectors of titles outside the vocabulary: their catalog row when
        set_catalog gave them one, else their metadata from the embeddings file (zeros: none)."""
        out = torch.empty(len(ids), self.model.input_dim)
        in_catalog = self._catalog is not None
        rows = [self._catalog_row.get(i, -1) if in_catalog else -1 for i in ids]
        have = [j for j, r in enumerate(rows) if r >= 0]
        if have:
            out[have] = self.model.input_vectors(self._catalog[[rows[j] for j in have]])
        rest = [j for j, r in enumerate(rows) if r < 0]
        if rest:
            unknown = torch.full((len(rest),), -1, dtype=torch.long)
            meta = self._file_metadata([ids[j] for j in rest])
            out[rest] = self.model.input_vectors(self.model.represent_items(unknown, meta))
        return out

    def _file_metadata(self, ids: list[str]) -> torch.Tensor:
        """[N, semantic_dim] metadata vectors from the embeddings file given at load time (zeros: none)."""
        zero = np.zeros(self.model.config.semantic_dim, np.float32)
        return torch.from_numpy(np.stack([self._semantic.get(i, zero) for i in ids]).astype(np.float32, copy=False))

    @torch.no_grad()
    def encode(self, histories: Sequence[History], task: str, delay: int = 0) -> torch.Tensor:
        """[B, item_dim] queries for the next event of `task` after each history."""
        head = self._head(task, delay)
        h_last = self.hidden(histories)
        return self.model.queries(h_last, torch.full((len(histories),), head, dtype=torch.long))

    @torch.no_grad()
    def score(self, histories: Sequence[History], task: str, delay: int = 0) -> np.ndarray:
        return self.score_heads(histories, [(task, delay)])[0]

    @torch.no_grad()
    def score_heads(self, histories: Sequence[History], heads: Sequence[tuple[str, int]]) -> list[np.ndarray]:
        """Runs the backbone once per batch of histories and applies every (task, delay) head to it."""
        if self._catalog is None:
            raise ConfigError("set_catalog must be called before score")
        head_ids = [self._head(task, delay) for task, delay in heads]
        out: list[list[np.ndarray]] = [[] for _ in heads]
        for start in range(0, len(histories), self.batch_size):
            h_last = self.hidden(histories[start:start + self.batch_size])
            for j, head in enumerate(head_ids):
                q = self.model.queries(h_last, torch.full((h_last.shape[0],), head, dtype=torch.long))
                out[j].append((q @ self._catalog.T).float().numpy())
        empty = np.zeros((0, self._catalog.shape[0]), np.float32)
        return [np.concatenate(parts).astype(np.float32, copy=False) if parts else empty for parts in out]

    @torch.no_grad()
    def recommend(self, histories: Sequence[History], task: str, k: int = 10, delay: int = 0,
                  filter_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k catalog positions and scores ([B, k] each), best first; titles in a history are
        removed when `filter_seen`. The catalog is scanned in blocks (see genrec.model.top_k)."""
        if self._catalog is None:
            raise ConfigError("set_catalog must be called before recommend")
        seen = None
        if filter_seen:
            seen = torch.zeros(len(histories), self._catalog.shape[0], dtype=torch.bool)
            for b, h in enumerate(histories):
                rows = [self._catalog_row[i] for i in h.items if i in self._catalog_row]
                seen[b, rows] = True
        scores, idx = top_k(self.encode(histories, task, delay), self._catalog, k, seen)
        return idx.numpy(), scores.numpy()


def load_model(model_dir: str) -> tuple[GenerativeRecommender | MemberEnsemble, dict]:
    """Model (or ensemble: card "members") and its config card from a model folder (safetensors:
    no code runs on load)."""
    from safetensors.torch import load_file

    try:
        with open(os.path.join(model_dir, MODEL_CONFIG_FILE)) as fh:
            card = json.load(fh)
        model = build_model(ModelConfig.from_saved(card["model"]), card.get("members", 1))
        model.load_state_dict(load_file(os.path.join(model_dir, MODEL_WEIGHTS_FILE)))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise InputError(f"{model_dir}: not a readable genrec model folder ({exc})") from None
    return model.eval(), card


def load_recommender(model_dir: str, embeddings_path: str | None = None) -> TransformerRecommender:
    model, card = load_model(model_dir)
    vocab = read_vocabulary(os.path.join(model_dir, VOCAB_FILE))
    semantic = None
    if embeddings_path and model.config.semantic_dim > 0:
        from genrec.semantic import read_embeddings

        ids, vectors = read_embeddings(embeddings_path)
        semantic = dict(zip(ids, vectors))
    return TransformerRecommender(model, vocab, card["tasks"], card.get("description", ""), semantic)
