"""The event-file formats extraction understands, and how each maps onto canonical columns.

A format is data, not code: delimiter, header, encoding and the source column feeding each canonical
column. Adding a format means adding one entry here (and a detection rule in `layout.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

from genrec.events import EVENT_TYPE, ITEM_ID, TIMESTAMP, USER_ID, WEIGHT


@dataclass(frozen=True)
class EventFormat:
    """How to read one kind of event file."""

    name: str
    container: str  # "text" | "jsonl" | "parquet"
    delimiter: str = ","  # text only; may be several characters (MovieLens 1M uses "::")
    header: bool = True  # text only; without one, `column_names` names the fields in order
    column_names: tuple[str, ...] = ()
    encoding: str = "utf-8"
    quoting: bool = True
    user: str = USER_ID
    item: str = ITEM_ID
    timestamp: str = TIMESTAMP
    event_type: str | None = EVENT_TYPE  # None: the format has no such column
    weight: str | None = WEIGHT
    ratings: bool = False  # weight is a rating: required, and high ratings also yield `like` events

    @property
    def required(self) -> tuple[str, ...]:
        """Source columns without which no row is usable."""
        return (self.user, self.item, self.timestamp) + ((self.weight,) if self.ratings and self.weight else ())


CANONICAL_CSV = EventFormat("csv", "text")
CANONICAL_JSONL = EventFormat("jsonl", "jsonl")
CANONICAL_PARQUET = EventFormat("parquet", "parquet")
MOVIELENS_CSV = EventFormat(
    "movielens-csv", "text", user="userId", item="movieId", timestamp="timestamp", event_type=None,
    weight="rating", ratings=True,
)
MOVIELENS_1M = EventFormat(
    "movielens-1m", "text", delimiter="::", header=False, column_names=("user", "item", "rating", "timestamp"),
    encoding="latin-1", quoting=False, user="user", item="item", event_type=None, weight="rating", ratings=True,
)
MOVIELENS_100K = EventFormat(
    "movielens-100k", "text", delimiter="\t", header=False, column_names=("user", "item", "rating", "timestamp"),
    encoding="latin-1", quoting=False, user="user", item="item", event_type=None, weight="rating", ratings=True,
)
FORMATS = {f.name: f for f in (CANONICAL_CSV, CANONICAL_JSONL, CANONICAL_PARQUET, MOVIELENS_CSV, MOVIELENS_1M, MOVIELENS_100K)}

# MovieLens 100K's u.item ends with 19 genre flags in this order (from its u.genre file).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
NO_GENRES = "(no genres listed)"
