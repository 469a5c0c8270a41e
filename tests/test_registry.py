"""Champion registry: publish + compare-and-swap on a local path and on the real fake GCS server."""
from __future__ import annotations

import json
import multiprocessing
import threading

import pytest

from genrec import storage
from genrec.errors import ConfigError, InputError, PromotionConflict
from genrec.registry import PromotionRefused, Registry, promote
from tests.gcs import fake_gcs, gcs_bucket  # noqa: F401


def make_model_dir(path, name: str) -> str:
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(name.encode() * 100)
    (path / "config.json").write_text(json.dumps({"preset": name, "tasks": ["play", "add"], "mtp_depth": 2,
                                                        "model": {"n_layer": 2, "n_embd": 32}}))
    (path / "metrics.json").write_text(json.dumps(
        {"preset": name, "num_params": 1234, "tokens": 10, "steps": 5,
         "tasks": {"play": {"mrr": 0.1, "recall@10": 0.2, "ndcg@10": 0.15, "loss": 3.0, "n": 7}}}))
    return str(path)


def evaluation(decision: str = "promote", baseline_kind: str = "popularity", baseline_run_id=None) -> dict:
    return {
        "decision": decision,
        "reasons": [f"test says {decision}"],
        "baseline": baseline_kind,
        "baseline_kind": baseline_kind,
        "baseline_run_id": baseline_run_id,
        "primary": {"task": "play", "delay": 0, "candidate_mrr": 0.3, "baseline_mrr": 0.2,
                    "diff": 0.1, "lower": 0.05, "upper": 0.15},
        "rows": [{"task": "play", "delay": 0, "slice": "all", "metric": "mrr", "candidate": 0.3,
                  "baseline": 0.2, "diff": 0.1, "lower": 0.05, "upper": 0.15, "n_users": 10}],
        "data_window": {"shadow_start": 100, "shadow_end": 200},
    }


@pytest.fixture(params=["local", "gcs"])
def registry_uri(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "registry")
    return request.getfixturevalue("gcs_bucket") + "/registry"


def test_first_promotion_publishes_model_and_pointer(registry_uri, tmp_path):
    registry = Registry(registry_uri)
    assert registry.champion() is None and registry.history() == []
    model = make_model_dir(tmp_path / "m1", "small")
    (tmp_path / "m1" / "checkpoints").mkdir()
    (tmp_path / "m1" / "checkpoints" / "step_10.pt").write_bytes(b"optimizer state")  # not published
    pointer = registry.promote(model, "run-1", evaluation(), expected=None)
    assert pointer["run_id"] == "run-1" and pointer["version"] == 1 and pointer["previous"] is None
    assert pointer["model_uri"] == storage.join(registry_uri.rstrip("/"), "models", "run-1")
    assert pointer["metrics"]["tasks"]["play"]["all.mrr"] == 0.3
    assert pointer["data_window"] == {"shadow_start": 100, "shadow_end": 200}
    assert registry.champion() == pointer
    published = storage.list_files(pointer["model_uri"])
    assert published == ["MODEL_CARD.md", "config.json", "metrics.json", "model.safetensors", "published.json"]
    assert storage.read_bytes(storage.join(pointer["model_uri"], "model.safetensors")) == b"small" * 100
    card = storage.read_text(storage.join(pointer["model_uri"], "MODEL_CARD.md"))
    assert "run run-1" in card and "first promotion" in card and "n_layer=2, n_embd=32" in card and "| play | 0 | all | mrr | 0.3000" in card


def test_promote_then_rollback_round_trip(registry_uri, tmp_path):
    registry = Registry(registry_uri)
    first = registry.promote(make_model_dir(tmp_path / "a", "a"), "run-a", evaluation(), expected=None)
    second = registry.promote(make_model_dir(tmp_path / "b", "b"), "run-b",
                              evaluation(baseline_kind="champion", baseline_run_id="run-a"), expected=first)
    assert second["previous"]["run_id"] == "run-a" and second["version"] == 2
    card = storage.read_text(storage.join(second["model_uri"], "MODEL_CARD.md"))
    assert "run-a" in card
    assert [p["run_id"] for p in registry.history()] == ["run-b", "run-a"]

    restored = registry.rollback(expected=second)
    assert restored["run_id"] == "run-a" and restored["model_uri"] == first["model_uri"]
    assert restored["version"] == 3 and restored["rolled_back_from"]["run_id"] == "run-b"
    assert registry.champion()["run_id"] == "run-a"
    with pytest.raises(ConfigError, match="no previous champion"):
        registry.rollback()
    third = registry.promote(make_model_dir(tmp_path / "c", "c"), "run-c", evaluation())
    assert third["previous"]["run_id"] == "run-a" and third["version"] == 4


def test_stale_expected_pointer_conflicts(registry_uri, tmp_path):
    registry = Registry(registry_uri)
    registry.promote(make_model_dir(tmp_path / "a", "a"), "run-a", evaluation(), expected=None)
    with pytest.raises(PromotionConflict, match="evaluated against no champion"):
        registry.promote(make_model_dir(tmp_path / "b", "b"), "run-b", evaluation(), expected=None)
    with pytest.raises(PromotionConflict, match="already the champion"):
        registry.promote(make_model_dir(tmp_path / "a2", "a"), "run-a", evaluation())
    assert registry.champion()["run_id"] == "run-a"


def _race(registry_uri: str, model_dirs: list[str], start_promoter) -> tuple[list, list, list]:
    """Every promoter reads the same champion, then all promote at once; a reader watches the pointer."""
    registry = Registry(registry_uri)
    expected = registry.champion()
    outcomes = start_promoter(registry_uri, model_dirs, expected)
    wins = [o for o in outcomes if o[0] == "won"]
    conflicts = [o for o in outcomes if o[0] == "conflict"]
    others = [o for o in outcomes if o[0] not in ("won", "conflict")]
    return wins, conflicts, others


def _promote_one(args) -> tuple[str, str]:
    registry_uri, model_dir, run_id, expected, barrier = args
    if barrier is not None:
        barrier.wait()
    try:
        Registry(registry_uri).promote(model_dir, run_id, evaluation(), expected=expected)
        return ("won", run_id)
    except PromotionConflict as err:
        return ("conflict", str(err))
    except Exception as err:  # any other failure is a test failure, reported below
        return ("error", repr(err))


def _with_threads(registry_uri, model_dirs, expected):
    barrier = threading.Barrier(len(model_dirs))
    results: list = [None] * len(model_dirs)
    stop = threading.Event()
    torn: list[str] = []

    def reader():
        while not stop.is_set():
            data = storage.read_versioned(storage.join(registry_uri, "champion.json"))[0]
            if data is not None:
                try:
                    json.loads(data)
                except json.JSONDecodeError:
                    torn.append(data.decode(errors="replace"))

    def run(i):
        results[i] = _promote_one((registry_uri, model_dirs[i], f"run-{i}", expected, barrier))

    watcher = threading.Thread(target=reader)
    watcher.start()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(model_dirs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert torn == []
    return results


def _process_main(args, queue) -> None:
    queue.put(_promote_one(args))


def _with_processes(registry_uri, model_dirs, expected):
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(len(model_dirs)), ctx.Queue()
    procs = [ctx.Process(target=_process_main, args=((registry_uri, d, f"run-{i}", expected, barrier), queue))
             for i, d in enumerate(model_dirs)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    return results


@pytest.mark.parametrize("with_champion", [False, True])
def test_eight_concurrent_promoters_threads(registry_uri, tmp_path, with_champion):
    if with_champion:
        Registry(registry_uri).promote(make_model_dir(tmp_path / "champ", "champ"), "champ", evaluation())
    dirs = [make_model_dir(tmp_path / f"m{i}", f"m{i}") for i in range(8)]
    wins, conflicts, others = _race(registry_uri, dirs, _with_threads)
    assert others == [] and len(wins) == 1 and len(conflicts) == 7
    pointer = json.loads(storage.read_text(storage.join(registry_uri, "champion.json")))
    assert pointer["run_id"] == wins[0][1]
    assert (pointer["previous"] or {}).get("run_id") == ("champ" if with_champion else None)


def test_eight_concurrent_promoters_processes_local(tmp_path):
    uri = str(tmp_path / "registry")
    Registry(uri).promote(make_model_dir(tmp_path / "champ", "champ"), "champ", evaluation())
    dirs = [make_model_dir(tmp_path / f"m{i}", f"m{i}") for i in range(8)]
    wins, conflicts, others = _race(uri, dirs, _with_processes)
    assert others == [] and len(wins) == 1 and len(conflicts) == 7
    assert Registry(uri).champion()["run_id"] == wins[0][1]


def test_promote_function_refuses_hold_and_checks_evaluated_champion(tmp_path):
    uri = str(tmp_path / "registry")
    model = make_model_dir(tmp_path / "m", "m")
    hold = tmp_path / "hold.json"
    hold.write_text(json.dumps(evaluation(decision="hold")))
    with pytest.raises(PromotionRefused, match="decision is 'hold'"):
        promote(uri, model, str(hold), "run-1")
    assert Registry(uri).champion() is None

    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(evaluation()))
    card = tmp_path / "card.md"
    pointer = promote(uri, model, str(ok), "run-1", model_card_path=str(card))
    assert pointer["run_id"] == "run-1" and "Model card: run run-1" in card.read_text()
    # an evaluation made against popularity (no champion) cannot replace the champion that appeared since
    with pytest.raises(PromotionConflict):
        promote(uri, make_model_dir(tmp_path / "m2", "m2"), str(ok), "run-2")
    against = tmp_path / "against.json"
    against.write_text(json.dumps(evaluation(baseline_kind="champion", baseline_run_id="run-1")))
    assert promote(uri, make_model_dir(tmp_path / "m3", "m3"), str(against), "run-3")["version"] == 2


def test_bad_inputs_raise_genrec_errors(tmp_path):
    uri = str(tmp_path / "registry")
    with pytest.raises(ConfigError, match="run id"):
        Registry(uri).promote(make_model_dir(tmp_path / "m", "m"), "bad/id", evaluation())
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        Registry(uri).promote(str(tmp_path / "empty"), "run-1", evaluation())
    (tmp_path / "registry").mkdir(exist_ok=True)
    (tmp_path / "registry" / "champion.json").write_text("{not json")
    with pytest.raises(InputError, match="champion.json: champion pointer is not valid JSON"):
        Registry(uri).champion()
    bad_eval = tmp_path / "bad.json"
    bad_eval.write_text("[")
    with pytest.raises(InputError, match="bad.json"):
        promote(uri, str(tmp_path / "empty"), str(bad_eval), "run-1")


def test_champion_model_is_on_disk_for_the_block_only(registry_uri, tmp_path):
    """Steps that warm-start from or replay the champion see it as a local folder; one copied down
    from gs:// is gone when the block ends, one already on disk is left alone."""
    import os

    from genrec.steps import champion_model

    with champion_model(registry_uri) as champion:
        assert champion is None  # first run: nothing to compare with
    with champion_model("") as champion:
        assert champion is None  # no registry at all
    pointer = Registry(registry_uri).promote(make_model_dir(tmp_path / "m1", "small"), "run-1", evaluation(),
                                             expected=None)
    with champion_model(registry_uri) as champion:
        assert champion.model_uri == pointer["model_uri"]
        with open(os.path.join(champion.local_dir, "model.safetensors"), "rb") as fh:
            assert fh.read() == b"small" * 100
    remote = storage.is_remote(pointer["model_uri"])
    assert os.path.exists(champion.local_dir) is not remote
