"""Built-in data: a seeded catalog, users and events with structure the later stages must find.

Planted structure, each there so a stage can be checked against a known truth:
- taste clusters: every title belongs to one genre cluster; a user mostly watches two clusters;
- sequential patterns: titles come in series, and a finished title is often followed by its sequel;
- drift: each user's weight moves from the first cluster to the second over the time range, and newly
  launched titles get a popularity boost that fades in days (so stale recommendations lose value);
- cold start: some titles launch inside the final week, with metadata that shares words with their
  cluster and, for a sequel, its series' name (so a semantic tower can score them without any
  interaction history);
- tasks that scale differently: `like` depends only on cluster taste (a small model saturates it),
  `play` depends on series order, drift and recency (keeps gaining from capacity).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genrec.events import EVENT_SCHEMA, TITLE_SCHEMA

DAY = 86_400
END_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z: fixed so the same seed gives the same files

_GENRES = ["drama", "comedy", "thriller", "documentary", "animation", "romance", "sci-fi", "horror",
           "crime", "fantasy", "family", "western"]
_GENRE_WORDS = {
    "drama": ["family", "loss", "courage", "letters", "winter", "promise"],
    "comedy": ["wedding", "roommates", "mixup", "holiday", "prank", "road"],
    "thriller": ["conspiracy", "chase", "witness", "hostage", "signal", "double"],
    "documentary": ["ocean", "history", "climate", "athletes", "empire", "music"],
    "animation": ["dragon", "robot", "forest", "kingdom", "toy", "island"],
    "romance": ["summer", "paris", "heart", "letters", "dance", "vineyard"],
    "sci-fi": ["galaxy", "android", "portal", "colony", "quantum", "orbit"],
    "horror": ["haunted", "cabin", "curse", "shadow", "ritual", "asylum"],
    "crime": ["heist", "detective", "mob", "cartel", "precinct", "alibi"],
    "fantasy": ["sword", "prophecy", "witch", "realm", "quest", "crown"],
    "family": ["puppy", "camp", "grandma", "treasure", "farm", "reunion"],
    "western": ["frontier", "outlaw", "ranch", "sheriff", "canyon", "railroad"],
}
_TITLE_NOUNS = ["Harbor", "Crown", "Signal", "River", "Garden", "Empire", "Echo", "Lantern", "Mirror",
                "Horizon", "Orchard", "Citadel", "Voyage", "Ember", "Meadow", "Tower"]
_TITLE_ADJ = ["Crimson", "Silent", "Last", "Hidden", "Golden", "Broken", "Distant", "Wild", "Quiet",
              "Burning", "Secret", "Frozen", "Northern", "Endless", "Bright", "Fallen"]


@dataclass(frozen=True)
class SynthConfig:
    """Sizes and strengths of the planted structure. Defaults fit the 5-minute local demo."""

    users: int = 1500
    titles: int = 800
    events_per_user: float = 80.0  # mean plays per user (log-normal spread)
    days: int = 60  # length of the event time range, ending at END_TIME
    clusters: int = 8
    sequel_prob: float = 0.45  # a finished title with a sequel is followed by it
    drift: float = 0.7  # final weight of a user's second cluster
    cold_start_fraction: float = 0.05  # titles launched inside the final week
    new_title_fraction: float = 0.10  # titles launched earlier inside the time range
    like_prob_in_taste: float = 0.55
    like_prob_off_taste: float = 0.05
    search_prob: float = 0.12
    seed: int = 7

    def __post_init__(self) -> None:
        if self.users < 1 or self.titles < self.clusters or self.clusters < 2:
            raise ValueError("need users >= 1, clusters >= 2 and titles >= clusters")
        if self.days < 8:
            raise ValueError("days must be at least 8: the final week is the shadow window")


@dataclass(frozen=True)
class SyntheticData:
    events: pa.Table  # EVENT_SCHEMA
    titles: pa.Table  # TITLE_SCHEMA


def _catalog(cfg: SynthConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = cfg.titles
    start = END_TIME - cfg.days * DAY
    cluster = rng.permutation(np.arange(n) % cfg.clusters)
    popularity = 1.0 / (1.0 + rng.permutation(n)) ** 0.8
    launch = start - rng.integers(30, 2000, size=n) * DAY  # back catalog
    kinds = rng.random(n)
    cold = kinds < cfg.cold_start_fraction
    new = (~cold) & (kinds < cfg.cold_start_fraction + cfg.new_title_fraction)
    launch[cold] = END_TIME - rng.integers(DAY // 2, 6 * DAY, size=cold.sum())
    launch[new] = start + rng.integers(0, (cfg.days - 7) * DAY, size=new.sum())
    # Series: consecutive titles of one cluster (ordered by launch) form chains of 2-5.
    successor = np.full(n, -1, dtype=np.int64)
    for c in range(cfg.clusters):
        members = np.flatnonzero(cluster == c)
        members = members[np.argsort(launch[members], kind="stable")]
        i = 0
        while i < len(members):
            length = int(rng.integers(1, 6))
            chain = members[i : i + length]
            successor[chain[:-1]] = chain[1:]
            i += length
    return {"cluster": cluster, "popularity": popularity, "launch": launch, "successor": successor}


def _series_titles(names: list[str], successor: np.ndarray) -> list[str]:
    """A sequel carries its series' name and part number, as real sequels do: metadata that ties a
    newly launched title to the one a user just watched, which no ID embedding can before launch."""
    predecessor = {int(s): p for p, s in enumerate(successor) if s >= 0}
    titles = []
    for i in range(len(names)):
        head, part = i, 1
        while head in predecessor:
            head, part = predecessor[head], part + 1
        titles.append(names[head] if part == 1 else f"{names[head]} Part {part}")
    return titles


def _titles_table(cfg: SynthConfig, cat: dict[str, np.ndarray], rng: np.random.Generator) -> pa.Table:
    genres = [_GENRES[c % len(_GENRES)] for c in cat["cluster"]]
    names, rows_genres, rows_tags, rows_desc = [], [], [], []
    for i, genre in enumerate(genres):
        words = _GENRE_WORDS[genre]
        adj, noun = _TITLE_ADJ[rng.integers(len(_TITLE_ADJ))], _TITLE_NOUNS[rng.integers(len(_TITLE_NOUNS))]
        names.append(f"The {adj} {noun}")
        second = _GENRES[int(rng.integers(len(_GENRES)))]
        rows_genres.append([genre] if second == genre or rng.random() < 0.6 else [genre, second])
        picked = rng.choice(words, size=3, replace=False)
        rows_tags.append([str(w) for w in picked[:2]])
        rows_desc.append(f"A {genre} story about {picked[0]} and {picked[1]}, where {picked[2]} changes everything.")
    return pa.table(
        {
            "item_id": [f"t{i:05d}" for i in range(cfg.titles)],
            "title": _series_titles(names, cat["successor"]),
            "genres": rows_genres,
            "tags": rows_tags,
            "description": rows_desc,
            "launch_date": cat["launch"].astype(np.int64),
        },
        schema=TITLE_SCHEMA,
    )


def generate(cfg: SynthConfig = SynthConfig()) -> SyntheticData:
    """Generate the catalog and the event log (deterministic for a given config)."""
    rng = np.random.default_rng(cfg.seed)
    cat = _catalog(cfg, rng)
    titles = _titles_table(cfg, cat, rng)
    start = END_TIME - cfg.days * DAY
    members = [np.flatnonzero(cat["cluster"] == c) for c in range(cfg.clusters)]

    users, items, times, types = [], [], [], []
    n_events = np.maximum(3, rng.lognormal(np.log(cfg.events_per_user), 0.6, size=cfg.users)).astype(int)
    for u in range(cfg.users):
        c1, c2 = rng.choice(cfg.clusters, size=2, replace=False)
        # Sessions: a handful of start times, events a few minutes apart inside each.
        n = int(n_events[u])
        n_sessions = max(1, n // 8)
        session_starts = np.sort(rng.uniform(start, END_TIME - 3600 * 4, size=n_sessions))
        session_of = np.sort(rng.integers(0, n_sessions, size=n))
        t_events = session_starts[session_of] + np.arange(n) * 0 + rng.uniform(0, 3 * 3600, size=n)
        t_events = np.sort(t_events).astype(np.int64)
        seen: set[int] = set()
        last = -1
        for t in t_events:
            frac = (t - start) / (END_TIME - start)
            succ = cat["successor"][last] if last >= 0 else -1
            if succ >= 0 and succ not in seen and cat["launch"][succ] <= t and rng.random() < cfg.sequel_prob:
                item = int(succ)
            else:
                r = rng.random()
                cluster = c2 if r < cfg.drift * frac else (c1 if r < 0.9 else rng.integers(cfg.clusters))
                cand = members[cluster]
                age_days = (t - cat["launch"][cand]) / DAY
                weight = cat["popularity"][cand] * (age_days >= 0) * (1.0 + 8.0 * np.exp(-np.maximum(age_days, 0) / 5.0))
                weight = weight * np.array([0.05 if i in seen else 1.0 for i in cand])
                if weight.sum() <= 0:
                    continue
                item = int(cand[rng.choice(len(cand), p=weight / weight.sum())])
            if rng.random() < cfg.search_prob:
                users.append(u), items.append(item), times.append(int(t) - 45), types.append("search")
            users.append(u), items.append(item), times.append(int(t)), types.append("play")
            in_taste = cat["cluster"][item] in (c1, c2)
            if rng.random() < (cfg.like_prob_in_taste if in_taste else cfg.like_prob_off_taste):
                users.append(u), items.append(item), times.append(int(t) + 30), types.append("like")
            seen.add(item)
            last = item

    order = np.lexsort((np.asarray(times), np.asarray(users)))
    users_a, items_a = np.asarray(users)[order], np.asarray(items)[order]
    events = pa.table(
        {
            "user_id": [f"u{u:05d}" for u in users_a],
            "item_id": [f"t{i:05d}" for i in items_a],
            "timestamp": np.asarray(times, dtype=np.int64)[order],
            "event_type": np.asarray(types)[order].tolist(),
            "weight": pa.nulls(len(order), pa.float32()),
        },
        schema=EVENT_SCHEMA,
    )
    return SyntheticData(events=events, titles=titles)


def write(data: SyntheticData, out_dir: str) -> dict[str, str]:
    """Write the canonical layout `extract` reads: events.parquet and titles.parquet."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"events": os.path.join(out_dir, "events.parquet"), "titles": os.path.join(out_dir, "titles.parquet")}
    pq.write_table(data.events, paths["events"])
    pq.write_table(data.titles, paths["titles"])
    return paths
