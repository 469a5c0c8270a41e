"""Canonical schemas and file names shared by every stage.

Every reader turns its input into these shapes, and every later stage reads only these, so a new
source format touches `genrec/sources/` and nothing else.
"""
from __future__ import annotations

import pyarrow as pa

# --- raw events -----------------------------------------------------------------------------------
USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"  # epoch seconds, int64
EVENT_TYPE = "event_type"
WEIGHT = "weight"
DEFAULT_EVENT_TYPE = "play"

EVENT_SCHEMA = pa.schema(
    [
        pa.field(USER_ID, pa.string(), nullable=False),
        pa.field(ITEM_ID, pa.string(), nullable=False),
        pa.field(TIMESTAMP, pa.int64(), nullable=False),
        pa.field(EVENT_TYPE, pa.string(), nullable=False),
        pa.field(WEIGHT, pa.float32(), nullable=True),
    ]
)
REQUIRED_EVENT_COLUMNS = (USER_ID, ITEM_ID, TIMESTAMP)

# --- title metadata -------------------------------------------------------------------------------
TITLE_SCHEMA = pa.schema(
    [
        pa.field(ITEM_ID, pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("genres", pa.list_(pa.string())),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("description", pa.string()),
        pa.field("launch_date", pa.int64()),  # epoch seconds, null when unknown
    ]
)
REQUIRED_TITLE_COLUMNS = (ITEM_ID, "title")

# --- per-user sequences (output of extract_sequences) ---------------------------------------------
# Each split folder holds Parquet shards with one row per user. `n_history` events come before the
# split's window (context only); the rest are the window's events (targets). For `train`,
# n_history == 0 and every event is a target.
SEQUENCE_SCHEMA = pa.schema(
    [
        pa.field(USER_ID, pa.string(), nullable=False),
        pa.field("items", pa.list_(pa.string()), nullable=False),
        pa.field("event_types", pa.list_(pa.string()), nullable=False),
        pa.field("timestamps", pa.list_(pa.int64()), nullable=False),
        pa.field("n_history", pa.int32(), nullable=False),
    ]
)
SPLITS = ("train", "validation", "shadow")

# Vocabulary: built from the train window only. Reserved indices first, then items by descending count.
PAD_INDEX, UNK_INDEX, MASK_INDEX = 0, 1, 2
NUM_RESERVED = 3
#: launch time of a title that is never treated as new (new-title masking)
NEVER = 2**63 - 1
VOCAB_SCHEMA = pa.schema(
    [
        pa.field(ITEM_ID, pa.string(), nullable=False),
        pa.field("index", pa.int64(), nullable=False),  # UNK_INDEX for titles not in the train window
        pa.field("count", pa.int64(), nullable=False),  # events in the train window
        pa.field("first_seen", pa.int64(), nullable=False),  # epoch seconds, over all windows
        pa.field("cold_start", pa.bool_(), nullable=False),  # first seen inside the shadow window
    ]
)

# --- semantic embeddings (output of embed_metadata) -----------------------------------------------
EMBEDDING_COLUMNS = (ITEM_ID, "vector", "content_hash")

# --- file names inside the artifacts ----------------------------------------------------------------
VOCAB_FILE = "vocabulary.parquet"
TITLES_FILE = "titles.parquet"
EXTRACT_METRICS_FILE = "extract_metrics.json"
DEAD_LETTER_DIR = "dead_letter"
EMBEDDINGS_FILE = "embeddings.parquet"
MODEL_WEIGHTS_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "config.json"
MODEL_METRICS_FILE = "metrics.json"
