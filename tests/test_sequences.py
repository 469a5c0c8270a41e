"""Extraction end to end on tiny inputs: time splits, history, stable ties, vocabulary, titles,
conservation of rows, dead letters, statistics, Beam == one-process reference, ml-latest-small."""
from __future__ import annotations

import glob
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from genrec.errors import ConfigError, InputError
from genrec.events import (
    DEAD_LETTER_DIR, EXTRACT_METRICS_FILE, NUM_RESERVED, SEQUENCE_SCHEMA, TITLE_SCHEMA, TITLES_FILE, UNK_INDEX,
    VOCAB_FILE, VOCAB_SCHEMA,
)
from genrec.sequences import ExtractConfig, check_input, extract_sequences, extract_sequences_local

DATA = os.path.join(os.path.dirname(__file__), "testdata", "extract")
ML_LATEST_SMALL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ml-latest-small")
DAY = 86_400
T = 1_600_000_000  # the data's last timestamp in the hand-made cases
NOW = 1_700_000_000
LIKES_IN_ML_LATEST_SMALL = 48_580  # ratings >= 4 in ratings.csv (awk -F, 'NR>1 && $3>=4' | wc -l)


def write_events(folder, rows: list[tuple[str, str, int]], row_group_size: int | None = None, types=None) -> str:
    """Canonical events.parquet from (user, item, timestamp) rows in this input order."""
    os.makedirs(folder, exist_ok=True)
    table = pa.table({
        "user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "timestamp": pa.array([r[2] for r in rows], pa.int64()),
        **({"event_type": types} if types else {}),
    })
    pq.write_table(table, os.path.join(folder, "events.parquet"), row_group_size=row_group_size)
    return str(folder)


def split_rows(out_dir: str, split: str) -> dict[str, dict]:
    table = pq.read_table(os.path.join(out_dir, split))
    assert table.schema.equals(SEQUENCE_SCHEMA, check_metadata=False)
    return {r["user_id"]: r for r in table.to_pylist()}


def run(events_dir: str, out_dir: str, beam: bool = False, **config) -> dict:
    """Beam where the runner matters; elsewhere the same functions in one process (faster tests)."""
    runner = extract_sequences if beam else extract_sequences_local
    return runner(events_dir, out_dir, ExtractConfig(now=NOW, **config))


def test_time_splits_history_and_max_len(tmp_path):
    a = [("A", "a1", T - 10 * DAY), ("A", "a2", T - 9 * DAY), ("A", "a3", T - 8 * DAY), ("A", "a4", T - 5 * DAY),
         ("A", "a5", T - 2 * DAY), ("A", "a6", T - DAY), ("A", "a7", T)]  # a5 at validation_start, a6 at shadow_start
    rows = a + [("B", "b1", T - 9 * DAY), ("C", "c1", T - DAY // 2)]
    metrics = run(write_events(tmp_path / "in", rows), str(tmp_path / "out"), shadow_days=1, validation_days=1, max_len=3)
    assert (metrics["validation_start"], metrics["shadow_start"], metrics["end"]) == (T - 2 * DAY, T - DAY, T)
    train, validation, shadow = (split_rows(str(tmp_path / "out"), s) for s in ("train", "validation", "shadow"))
    assert {u: (r["items"], r["n_history"]) for u, r in train.items()} == {"A": (["a2", "a3", "a4"], 0), "B": (["b1"], 0)}
    assert {u: (r["items"], r["n_history"]) for u, r in validation.items()} == {"A": (["a2", "a3", "a4", "a5"], 3)}
    assert {u: (r["items"], r["n_history"]) for u, r in shadow.items()} == {
        "A": (["a3", "a4", "a5", "a6", "a7"], 3), "C": (["c1"], 0)}
    assert shadow["A"]["timestamps"] == [T - 8 * DAY, T - 5 * DAY, T - 2 * DAY, T - DAY, T]
    assert metrics["users"] == {"train": 2, "validation": 1, "shadow": 2, "all": 3}


def test_ties_keep_input_order_across_units_and_likes_follow_their_play(tmp_path):
    items = ["e", "d", "c", "b", "a"]
    rows = [("U", i, T) for i in items] + [("U", "z", T - 20 * DAY)]
    out = str(tmp_path / "out")
    run(write_events(tmp_path / "in", rows, row_group_size=2), out)  # ties spread over 3 row groups
    assert split_rows(out, "shadow")["U"]["items"] == ["z"] + items
    run(os.path.join(DATA, "mlcsv"), out, shadow_days=1, validation_days=1)
    user1 = split_rows(out, "train")["1"]  # three ratings at one timestamp: 4.0, 3.5, 4.5
    assert user1["items"] == ["1", "1", "2", "3", "3"]
    assert user1["event_types"] == ["play", "like", "play", "play", "like"]


def test_vocabulary_indices_counts_unk_and_cold_start(tmp_path):
    rows = ([("u1", "y", T - 30 * DAY)] * 1 + [("u1", "x", T - 29 * DAY), ("u2", "x", T - 28 * DAY), ("u2", "y", T - 27 * DAY)]
            + [("u3", "x", T - 26 * DAY), ("u3", "y", T - 25 * DAY), ("u3", "z", T - 24 * DAY), ("u3", "q", T - 23 * DAY)]
            + [("u4", "w", T - 10 * DAY), ("u4", "q", T - 2 * DAY), ("u5", "v", T - 3 * DAY), ("u5", "v", T)])
    metrics = run(write_events(tmp_path / "in", rows), str(tmp_path / "out"))
    vocab = pq.read_table(tmp_path / "out" / VOCAB_FILE)
    assert vocab.schema.equals(VOCAB_SCHEMA, check_metadata=False)
    got = {r["item_id"]: (r["index"], r["count"], r["cold_start"]) for r in vocab.to_pylist()}
    # x and y tie at 3 train events: ordered by id; q and z tie at 1.
    assert got == {"x": (NUM_RESERVED, 3, False), "y": (NUM_RESERVED + 1, 3, False), "q": (NUM_RESERVED + 2, 1, False),
                   "z": (NUM_RESERVED + 3, 1, False), "w": (UNK_INDEX, 0, False), "v": (UNK_INDEX, 0, True)}
    assert vocab.column("first_seen").to_pylist()[vocab.column("item_id").to_pylist().index("v")] == T - 3 * DAY
    assert (metrics["items"], metrics["vocabulary_size"], metrics["cold_start_items"]) == (6, 4, 1)


def test_conservation_dead_letters_and_duplicates(tmp_path):
    out = str(tmp_path / "out")
    metrics = run(os.path.join(DATA, "bad_csv"), out, beam=True)
    assert metrics["dropped"] == {"exact_duplicate": 1}
    assert sum(metrics["dead_letter"].values()) == 11 and metrics["dead_letter"]["truncated_line"] == 1
    assert metrics["input_rows"] == metrics["rows_used"] + sum(metrics["dropped"].values()) + sum(metrics["dead_letter"].values())
    assert (metrics["input_rows"], metrics["rows_used"], metrics["output_events"]) == (14, 2, 2)
    dead = [json.loads(line) for p in sorted(glob.glob(os.path.join(out, DEAD_LETTER_DIR, "part-*.jsonl"))) for line in open(p)]
    assert sorted(d["line"] for d in dead) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16]
    assert {d["reason"] for d in dead} == set(metrics["dead_letter"])
    assert json.load(open(os.path.join(out, DEAD_LETTER_DIR, "reasons.json"))) == metrics["dead_letter"]

    chunked = run(os.path.join(DATA, "bad_csv"), out + "-chunked", beam=True, text_chunk_mb=30 / (1 << 20))
    assert chunked == metrics  # 30-byte chunks: dead-letter lines are renumbered to lines of the file
    dead_chunked = [json.loads(line) for p in glob.glob(os.path.join(out + "-chunked", DEAD_LETTER_DIR, "part-*.jsonl"))
                    for line in open(p)]
    assert sorted((d["line"], d["raw"]) for d in dead_chunked) == sorted((d["line"], d["raw"]) for d in dead)

    ml = run(os.path.join(DATA, "mlcsv"), out)  # derived likes are events, not rows
    assert ml["input_rows"] == ml["rows_used"] == 5 and ml["derived_events"] == 3 and ml["output_events"] == 8


def test_titles_cover_every_title_and_every_item_with_events(tmp_path):
    out = str(tmp_path / "out")
    run(os.path.join(DATA, "canonical_csv"), out)
    titles = pq.read_table(os.path.join(out, TITLES_FILE))
    assert titles.schema.equals(TITLE_SCHEMA, check_metadata=False)
    by_id = {r["item_id"]: r for r in titles.to_pylist()}
    assert set(by_id) == {"a", "b", "c"} and by_id["c"]["title"] is None and by_id["a"]["title"] == "Alpha (2019)"
    metrics = run(os.path.join(DATA, "mlcsv"), out)
    assert metrics["titles"] == 4 and metrics["items"] == 3  # "Never Rated" has metadata but no events


def test_every_split_has_every_shard_and_reruns_replace_old_shards(tmp_path):
    out = str(tmp_path / "out")
    run(os.path.join(DATA, "mlcsv"), out, num_shards=8, shadow_days=1, validation_days=1)
    run(os.path.join(DATA, "mlcsv"), out, num_shards=3, shadow_days=1, validation_days=1)
    for split in ("train", "validation", "shadow"):
        names = sorted(os.listdir(os.path.join(out, split)))
        assert names == [f"part-{i:05d}-of-00003.parquet" for i in range(3)]
    assert pq.read_table(os.path.join(out, "train")).num_rows == 2


def test_beam_and_one_process_reference_write_identical_outputs(tmp_path):
    rng = np.random.default_rng(3)
    n = 3000
    rows = [(f"u{u}", f"i{i}", int(t)) for u, i, t in
            zip(rng.integers(0, 150, n), rng.zipf(1.5, n) % 200, T - rng.integers(0, 40 * DAY, n))]
    rows += rows[:50]  # duplicates
    data = write_events(tmp_path / "in", rows, row_group_size=700)
    config = ExtractConfig(now=NOW, num_shards=3, max_len=20)
    beam = extract_sequences(data, str(tmp_path / "beam"), config)
    local = extract_sequences_local(data, str(tmp_path / "local"), config)
    assert beam == local and beam["dropped"]["exact_duplicate"] == len(rows) - len(set(rows))
    for name in ("train", "validation", "shadow"):
        for path in sorted(glob.glob(str(tmp_path / "beam" / name / "*.parquet"))):
            other = path.replace(str(tmp_path / "beam"), str(tmp_path / "local"))
            assert pq.read_table(path).equals(pq.read_table(other)), path
    assert pq.read_table(tmp_path / "beam" / VOCAB_FILE).equals(pq.read_table(tmp_path / "local" / VOCAB_FILE))
    users = pq.read_table(tmp_path / "beam" / "train").column("user_id").to_pylist()
    assert len(users) == len(set(users)) == beam["users"]["train"]


def test_statistics_schema_and_summary_page(tmp_path):
    out = tmp_path / "out"
    metrics = run(os.path.join(DATA, "bad_csv"), str(out))
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString((out / "statistics.pb").read_bytes())
    events = {d.name: d for d in stats.datasets}["events"]
    assert events.num_examples == metrics["output_events"]
    features = {f.name: f for f in events.features}
    assert features["timestamp"].num_stats.min == 1600000000 and features["timestamp"].num_stats.max == 1600000001
    assert [v.value for v in features["event_type"].string_stats.top_values] == ["play"]
    assert {d.name for d in stats.datasets} == {"events", "train", "validation", "shadow"}
    schema = text_format.Parse((out / "schema.pbtxt").read_text(), schema_pb2.Schema())
    assert [f.name for f in schema.feature] == ["user_id", "item_id", "timestamp", "event_type", "weight"]
    assert list(schema.string_domain[0].value) == ["play"]
    page = (out / "summary.html").read_text()
    for text in ("far_future_timestamp", "truncated_line", "exact_duplicate", "shadow_start", "Top items"):
        assert text in page


def test_no_usable_rows_and_bad_settings_raise_one_line_errors(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "events.csv").write_text("user_id,item_id,timestamp\nu1,a,never\n,b,5\n")
    with pytest.raises(InputError, match=r"in: no usable events \(2 rows read; dead letters: bad_timestamp=1, missing_field:user_id=1\)"):
        run(str(folder), str(tmp_path / "out"), beam=True)
    with pytest.raises(ConfigError):
        ExtractConfig(max_len=0)
    (folder / "events.csv").write_text("user_id,timestamp\nu1,5\n")
    with pytest.raises(InputError, match=r"events\.csv: missing required column 'item_id' \(found: user_id, timestamp\)"):
        check_input(str(folder))  # the same check extraction makes, without starting a pipeline
    assert check_input(os.path.join(DATA, "mlcsv")) == {
        "source": "movielens-csv", "event_files": 1, "read_units": 1, "title_files": 1, "tag_files": 1}
    with pytest.raises(InputError, match="no such file or folder"):
        run(str(tmp_path / "missing"), str(tmp_path / "out"))


def test_a_file_failing_inside_a_beam_worker_surfaces_as_one_input_error(tmp_path):
    rows = [(f"u{i}", f"i{i}", T + i) for i in range(20_000)]
    path = os.path.join(write_events(tmp_path / "in", rows), "events.parquet")
    data = bytearray(open(path, "rb").read())
    data[200: len(data) // 2] = b"\x55" * (len(data) // 2 - 200)  # data pages garbled, footer intact
    open(path, "wb").write(bytes(data))
    with pytest.raises(InputError, match=r"events\.parquet: cannot read row group 0 \(OSError: .*\)$"):
        run(str(tmp_path / "in"), str(tmp_path / "out"), beam=True)


@pytest.mark.skipif(not os.path.exists(ML_LATEST_SMALL), reason="shared MovieLens copy not present")
def test_ml_latest_small_counts(tmp_path):
    metrics = extract_sequences(ML_LATEST_SMALL, str(tmp_path / "out"))
    assert metrics["input_rows"] == metrics["rows_used"] == 100_836
    assert metrics["users"]["all"] == 610 and metrics["titles"] == 9_742
    assert metrics["derived_events"] == LIKES_IN_ML_LATEST_SMALL
    assert metrics["output_events"] == 100_836 + metrics["derived_events"] and not metrics["dead_letter"]
    assert metrics["users"]["train"] <= 610
