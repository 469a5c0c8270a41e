"""gs:// in and out through Beam's GCS file system, against a real fake-gcs-server on loopback."""
from __future__ import annotations

import io
import json
import os

import pyarrow.parquet as pq
import pytest

from genrec.errors import InputError
from genrec.events import EXTRACT_METRICS_FILE, VOCAB_FILE
from genrec.sequences import ExtractConfig, extract_sequences, extract_sequences_local
from tests.gcs import fake_gcs, gcs_bucket, gcs_client  # noqa: F401

DATA = os.path.join(os.path.dirname(__file__), "testdata", "extract")
CONFIG = ExtractConfig(now=1_700_000_000, shadow_days=1, validation_days=1, num_shards=2)


def upload_folder(local: str, bucket_uri: str, prefix: str) -> str:
    bucket = gcs_client().bucket(bucket_uri[len("gs://"):])
    for name in sorted(os.listdir(local)):
        bucket.blob(f"{prefix}/{name}").upload_from_filename(os.path.join(local, name))
    return f"{bucket_uri}/{prefix}"


def read_blob(uri: str) -> bytes:
    bucket, _, key = uri[len("gs://"):].partition("/")
    return gcs_client().bucket(bucket).blob(key).download_as_bytes()


def test_gcs_round_trip_matches_a_local_run(gcs_bucket, tmp_path):  # noqa: F811
    events = upload_folder(os.path.join(DATA, "mlcsv"), gcs_bucket, "movielens")
    out = f"{gcs_bucket}/extract"
    metrics = extract_sequences(events, out, CONFIG)
    local = extract_sequences_local(os.path.join(DATA, "mlcsv"), str(tmp_path), CONFIG)
    assert metrics == local and metrics["titles"] == 4
    assert json.loads(read_blob(f"{out}/{EXTRACT_METRICS_FILE}")) == metrics
    names = sorted(b.name for b in gcs_client().list_blobs(gcs_bucket[len("gs://"):], prefix="extract/"))
    assert "extract/train/part-00001-of-00002.parquet" in names and "extract/summary.html" in names
    remote_vocab = pq.read_table(io.BytesIO(read_blob(f"{out}/{VOCAB_FILE}")))
    assert remote_vocab.equals(pq.read_table(tmp_path / VOCAB_FILE))
    remote_train = pq.read_table(io.BytesIO(read_blob(f"{out}/train/part-00000-of-00002.parquet")))
    assert remote_train.equals(pq.read_table(tmp_path / "train" / "part-00000-of-00002.parquet"))


def test_gcs_dead_letters_and_errors_name_the_object(gcs_bucket):  # noqa: F811
    events = upload_folder(os.path.join(DATA, "bad_csv"), gcs_bucket, "bad")
    metrics = extract_sequences(events, f"{gcs_bucket}/out", CONFIG)
    dead = read_blob(f"{gcs_bucket}/out/dead_letter/part-00000.jsonl").decode().splitlines()
    assert len(dead) == sum(metrics["dead_letter"].values()) == 11
    assert json.loads(dead[0])["source"] == f"{events}/events.csv"
    with pytest.raises(InputError, match=f"{gcs_bucket}/nothing-here: no such file or folder"):
        extract_sequences(f"{gcs_bucket}/nothing-here", f"{gcs_bucket}/out2", CONFIG)
