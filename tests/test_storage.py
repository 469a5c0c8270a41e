"""genrec.storage against local paths and the real fake GCS server on loopback."""
from __future__ import annotations

import threading

import pytest

from genrec import storage
from genrec.errors import InputError
from tests.gcs import fake_gcs, gcs_bucket  # noqa: F401


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("gcs_bucket") + "/root"


def test_read_write_exists_list(root):
    uri = storage.join(root, "a", "b.txt")
    assert not storage.exists(uri)
    storage.write_text(uri, "hello")
    storage.write_bytes(storage.join(root, "c.bin"), b"\x00\x01")
    assert storage.exists(uri)
    assert storage.read_text(uri) == "hello"
    assert storage.read_bytes(storage.join(root, "c.bin")) == b"\x00\x01"
    assert storage.list_files(root) == ["a/b.txt", "c.bin"]
    storage.write_text(uri, "again")
    assert storage.read_text(uri) == "again"


def test_missing_file_names_the_uri(root):
    uri = storage.join(root, "missing.json")
    with pytest.raises(InputError, match="missing.json: not found"):
        storage.read_bytes(uri)
    assert storage.read_versioned(uri) == (None, None)
    assert storage.list_files(storage.join(root, "nothing")) == []


def test_compare_and_swap_sequence(root):
    uri = storage.join(root, "pointer.json")
    gen1 = storage.compare_and_swap(uri, b'{"v": 1}', None)
    with pytest.raises(storage.StaleGeneration):
        storage.compare_and_swap(uri, b'{"v": 9}', None)  # must-not-exist fails once it exists
    data, gen = storage.read_versioned(uri)
    assert (data, gen) == (b'{"v": 1}', gen1)
    gen2 = storage.compare_and_swap(uri, b'{"v": 2}', gen1)
    assert gen2 != gen1
    with pytest.raises(storage.StaleGeneration):
        storage.compare_and_swap(uri, b'{"v": 3}', gen1)  # stale generation
    assert storage.read_versioned(uri) == (b'{"v": 2}', gen2)


def test_concurrent_swaps_from_one_generation_have_one_winner(root):
    uri = storage.join(root, "pointer.json")
    gen = storage.compare_and_swap(uri, b"start", None)
    barrier = threading.Barrier(8)
    wins, losses = [], []

    def writer(i: int) -> None:
        barrier.wait()
        try:
            storage.compare_and_swap(uri, f"writer {i}".encode(), gen)
            wins.append(i)
        except storage.StaleGeneration:
            losses.append(i)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    assert storage.read_bytes(uri) == f"writer {wins[0]}".encode()


def test_copy_dir_round_trip_with_last_file(root, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "model.safetensors").write_bytes(b"w" * 1000)
    (src / "config.json").write_text("{}")
    (src / "sub" / "x.txt").write_text("x")
    copied = storage.upload_dir(str(src), storage.join(root, "m"), last=["config.json"])
    assert copied[-1] == "config.json" and sorted(copied) == ["config.json", "model.safetensors", "sub/x.txt"]
    back = tmp_path / "back"
    storage.download_dir(storage.join(root, "m"), str(back))
    assert (back / "model.safetensors").read_bytes() == b"w" * 1000
    assert (back / "sub" / "x.txt").read_text() == "x"
    with pytest.raises(InputError, match="no files to copy"):
        storage.copy_dir(storage.join(root, "empty"), str(tmp_path / "nowhere"))


def test_gcs_to_gcs_copy(gcs_bucket):  # noqa: F811
    storage.write_text(gcs_bucket + "/a/f.txt", "data")
    storage.copy_dir(gcs_bucket + "/a", gcs_bucket + "/b")
    assert storage.read_text(gcs_bucket + "/b/f.txt") == "data"


def test_split_gcs_rejects_bad_uris():
    assert storage.split_gcs("gs://bucket/a/b") == ("bucket", "a/b")
    with pytest.raises(InputError):
        storage.split_gcs("gs:///x")
    with pytest.raises(InputError):
        storage.split_gcs("/local/path")
