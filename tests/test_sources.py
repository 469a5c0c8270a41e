"""Readers: layout detection, every input format, every dead-letter reason, title metadata."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec.errors import InputError
from genrec.sources import plan_units, read_titles, read_unit, resolve
from genrec.sources.normalize import RowLimits

DATA = os.path.join(os.path.dirname(__file__), "testdata", "extract")
LIMITS = RowLimits(max_timestamp=1_700_000_000)  # fixtures' "now": later timestamps are far-future


def read_all(uri: str, titles_uri: str | None = None):
    """Resolve and read every unit: (spec, events table, dead letters table, input rows, derived)."""
    spec = resolve(uri, titles_uri)
    results = [read_unit(u, LIMITS, like_threshold=4.0) for u in plan_units(list(spec.event_files))]
    events = pa.concat_tables([r.events for r in results])
    dead = pa.concat_tables([r.dead for r in results])
    return spec, events, dead, sum(r.input_rows for r in results), sum(r.derived_events for r in results)


def utc(*ymd: int) -> int:
    return int(dt.datetime(*ymd, tzinfo=dt.timezone.utc).timestamp())


def reasons_by_line(dead: pa.Table) -> dict[int, str]:
    return dict(zip(dead.column("line").to_pylist(), dead.column("reason").to_pylist()))


@pytest.mark.parametrize(
    "folder, fmt, rows, derived, titles",
    [
        ("ml100k", "movielens-100k", 5, 2, ["u.item"]),
        ("ml1m", "movielens-1m", 4, 3, ["movies.dat"]),
        ("mlcsv", "movielens-csv", 5, 3, ["movies.csv"]),
        ("canonical_csv", "csv", 4, 0, ["titles.csv"]),
        ("canonical_jsonl", "jsonl", 3, 0, ["titles.jsonl"]),
    ],
)
def test_folder_layout_is_detected_and_read(folder, fmt, rows, derived, titles):
    spec, events, dead, input_rows, n_derived = read_all(os.path.join(DATA, folder))
    assert spec.kind == fmt
    assert [os.path.basename(p) for p in spec.title_files] == titles
    assert (input_rows, dead.num_rows, n_derived) == (rows, 0, derived)
    assert events.num_rows == rows + derived
    if derived:  # MovieLens: every rating is a play, ratings >= 4 also a like at the same timestamp
        likes = events.filter(pa.compute.equal(events.column("event_type"), "like"))
        assert all(w >= 4.0 for w in likes.column("weight").to_pylist())
        plays = events.filter(pa.compute.equal(events.column("event_type"), "play"))
        assert plays.num_rows == rows


def test_canonical_csv_parses_epoch_iso_and_float_timestamps_and_defaults_event_type():
    _, events, _, _, _ = read_all(os.path.join(DATA, "canonical_csv"))
    rows = events.to_pylist()
    assert [r["timestamp"] for r in rows] == [1600000000, 1600000001, 1600041600, 1600200000]
    assert [r["event_type"] for r in rows] == ["play", "like", "play", "search"]
    assert rows[0]["weight"] is None and rows[1]["weight"] == 1.5


def test_jsonl_accepts_numeric_ids_and_iso_timestamps():
    _, events, _, input_rows, _ = read_all(os.path.join(DATA, "canonical_jsonl"))
    assert input_rows == 3  # the blank line is no row
    assert events.column("user_id").to_pylist() == ["u1", "7", "u2"]
    assert events.column("timestamp").to_pylist()[2] == 1600041600


def test_every_delimited_text_dead_letter_reason_with_its_line():
    _, events, dead, input_rows, _ = read_all(os.path.join(DATA, "bad_csv", "events.csv"))
    assert reasons_by_line(dead) == {
        3: "missing_field:user_id", 4: "missing_field:item_id", 5: "missing_field:timestamp", 6: "bad_timestamp",
        7: "nan_or_inf", 8: "negative_timestamp", 9: "far_future_timestamp", 10: "bad_encoding",
        11: "wrong_type:weight", 12: "extra_fields", 16: "truncated_line",
    }
    assert input_rows == 14 and events.num_rows == 3  # lines 2, 13, 14 (the duplicate is dropped later)
    row = {r["line"]: r for r in dead.to_pylist()}
    assert row[6]["raw"] == "u1,a,yesterday,play,1" and row[6]["source"].endswith("bad_csv/events.csv")
    assert row[10]["raw"] == "u1,\\xff\\xfeitem,1600000000,play,1"
    assert row[16]["raw"] == "u2,b,16000"


def test_every_jsonl_dead_letter_reason_with_its_line():
    _, events, dead, input_rows, _ = read_all(os.path.join(DATA, "bad_jsonl", "events.jsonl"))
    assert reasons_by_line(dead) == {
        2: "wrong_type:timestamp", 3: "bad_json", 4: "wrong_type:row", 5: "bad_encoding", 6: "nan_or_inf",
        7: "missing_field:user_id", 8: "truncated_line",
    }
    assert (input_rows, events.num_rows) == (8, 1)


def test_parquet_row_groups_become_units_and_wrong_types_are_dead_lettered(tmp_path):
    table = pa.table({
        "user_id": ["u1", "u2", None, "u4"],
        "item_id": pa.array([1, 2, 3, 4], pa.int64()),  # integer ids are accepted as strings
        "timestamp": pa.array([1.6e9, float("nan"), 1.6e9, 1.6e9 + 5], pa.float64()),
        "weight": pa.array([1.0, 2.0, 3.0, None], pa.float32()),
    })
    pq.write_table(table, tmp_path / "events.parquet", row_group_size=2)
    spec = resolve(str(tmp_path))
    units = plan_units(list(spec.event_files))
    assert [(u.row_group, u.row_offset) for u in units] == [(0, 0), (1, 2)]
    results = [read_unit(u, LIMITS, 4.0) for u in units]
    dead = pa.concat_tables([r.dead for r in results])
    assert reasons_by_line(dead) == {1: "nan_or_inf", 2: "missing_field:user_id"}
    assert json.loads(dead.column("raw")[0].as_py())["user_id"] == "u2"
    events = pa.concat_tables([r.events for r in results])
    assert events.column("item_id").to_pylist() == ["1", "4"]
    assert events.column("timestamp").to_pylist() == [1600000000, 1600000005]


def test_glob_and_events_folder_of_mixed_shards():
    spec, events, _, _, _ = read_all(os.path.join(DATA, "sharded"))
    assert spec.kind == "csv,jsonl" and [os.path.basename(p) for p in spec.title_files] == ["titles.csv"]
    assert sorted(events.column("item_id").to_pylist()) == ["a", "b", "c"]
    spec, events, _, _, _ = read_all(os.path.join(DATA, "sharded", "events", "*.csv"))
    assert events.num_rows == 2 and spec.title_files == ()


def test_missing_required_column_names_the_file_and_column(tmp_path):
    (tmp_path / "events.csv").write_text("user_id,item_id,time\nu,i,1\n")
    with pytest.raises(InputError, match=r"events\.csv: missing required column 'timestamp'"):
        plan_units(list(resolve(str(tmp_path)).event_files))
    pq.write_table(pa.table({"user_id": ["u"], "timestamp": [1]}), tmp_path / "x.parquet")
    with pytest.raises(InputError, match=r"x\.parquet: missing required column 'item_id'"):
        plan_units([(str(tmp_path / "x.parquet"), "parquet")])


def test_unreadable_and_unrecognised_inputs_raise_input_error(tmp_path):
    (tmp_path / "events.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"events\.parquet: cannot read Parquet metadata"):
        plan_units(list(resolve(str(tmp_path)).event_files))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="no recognised events"):
        resolve(str(other))
    with pytest.raises(InputError, match="matches no files"):
        resolve(str(tmp_path / "*.csv"))


def test_movielens_titles_genres_launch_dates_and_latin1():
    t100k = {r["item_id"]: r for r in read_titles(resolve(os.path.join(DATA, "ml100k")).title_files).to_pylist()}
    assert t100k["10"]["title"] == "Café Society (1995)" and t100k["10"]["genres"] == ["Comedy", "Drama"]
    assert t100k["20"]["launch_date"] == utc(1995, 12, 15)
    assert t100k["30"]["genres"] == [] and t100k["30"]["launch_date"] == utc(1996, 1, 1)  # year from the title
    t1m = {r["item_id"]: r for r in read_titles(resolve(os.path.join(DATA, "ml1m")).title_files).to_pylist()}
    assert t1m["914"]["title"] == "Amélie: Le Fabuleux Destin (2001)"
    assert t1m["661"]["genres"] == ["Animation", "Children's", "Musical"]


def test_movielens_csv_tags_are_aggregated_per_movie_most_used_first():
    spec = resolve(os.path.join(DATA, "mlcsv"))
    titles = {r["item_id"]: r for r in read_titles(spec.title_files, spec.tag_files).to_pylist()}
    assert titles["1"]["tags"] == ["pixar", "fun"]  # "Pixar" merged case-insensitively
    assert titles["2"]["title"] == "American President, The (1995)" and titles["2"]["tags"] == ["politics"]
    assert titles["3"]["genres"] == [] and titles["3"]["launch_date"] is None


def test_canonical_titles_lists_and_dates():
    titles = {r["item_id"]: r for r in read_titles(resolve(os.path.join(DATA, "canonical_csv")).title_files).to_pylist()}
    assert titles["a"]["genres"] == ["Drama", "Crime"] and titles["a"]["description"] == "A film, with a comma"
    assert titles["a"]["launch_date"] == utc(2019, 1, 1) and titles["b"]["launch_date"] == utc(2020, 1, 1)
    jl = {r["item_id"]: r for r in read_titles(resolve(os.path.join(DATA, "canonical_jsonl")).title_files).to_pylist()}
    assert jl["a"]["tags"] == ["x", "y"] and jl["b"]["launch_date"] == utc(2001, 1, 1)


def test_explicit_titles_uri_overrides_the_files_beside_the_events(tmp_path):
    shutil.copy(os.path.join(DATA, "canonical_csv", "events.csv"), tmp_path / "events.csv")
    spec = resolve(str(tmp_path / "events.csv"), os.path.join(DATA, "canonical_jsonl", "titles.jsonl"))
    assert [os.path.basename(p) for p in spec.title_files] == ["titles.jsonl"]


@pytest.mark.parametrize("folder", ["bad_csv", "bad_jsonl", "ml1m", "canonical_csv"])
def test_text_files_read_in_byte_chunks_give_the_same_rows(folder):
    """Chunks cut mid-line own disjoint whole lines; order keys and reasons match a one-piece read."""
    files = list(resolve(os.path.join(DATA, folder)).event_files)
    whole = [read_unit(u, LIMITS, 4.0) for u in plan_units(files, chunk_bytes=0)]
    units = plan_units(files, chunk_bytes=23)
    assert len(units) > 3 and units[0].byte_start == 0 and units[-1].byte_end == -1
    parts = [read_unit(u, LIMITS, 4.0) for u in units]
    key = "_order"
    assert pa.concat_tables([p.events for p in parts]).sort_by(key).equals(whole[0].events.sort_by(key))
    assert sum(p.input_rows for p in parts) == whole[0].input_rows
    assert sum(p.owned_lines for p in parts) == whole[0].owned_lines
    reasons = sorted(r for p in parts for r in p.dead.column("reason").to_pylist())
    assert reasons == sorted(whole[0].dead.column("reason").to_pylist())


def test_arrow_timestamp_and_date_columns_become_epoch_seconds(tmp_path):
    stamps = pa.array([1_600_000_000_123, 1_600_000_001_999, None], pa.timestamp("ms", tz="UTC"))
    pq.write_table(pa.table({"user_id": ["u", "u", "u"], "item_id": ["a", "b", "c"], "timestamp": stamps}),
                   tmp_path / "events.parquet")
    _, events, dead, _, _ = read_all(str(tmp_path))
    assert events.column("timestamp").to_pylist() == [1_600_000_000, 1_600_000_001]
    assert dead.column("reason").to_pylist() == ["missing_field:timestamp"]
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["a"], "timestamp": pa.array([18_500], pa.date32())}),
                   tmp_path / "events.parquet")
    assert read_all(str(tmp_path))[1].column("timestamp").to_pylist() == [18_500 * 86_400]
