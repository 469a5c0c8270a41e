"""Shadow replay, metrics per slice, bootstrap and the promote/hold rule, on tiny hand-made windows."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec.baselines import PopularityRecommender
from genrec.errors import ConfigError
from genrec.events import SEQUENCE_SCHEMA, VOCAB_SCHEMA
from genrec.metrics import paired_bootstrap, paired_bootstrap_columns
from genrec.recommender import Recommender
from genrec.shadow import (ShadowConfig, Window, build_requests, decide,
                           shadow_evaluate, shadow_evaluate_recommenders)

DAY = 86400


def write_sequences(root, shadow_rows, train_rows=(), cold=(), extra_items=()) -> str:
    """A sequences folder: rows are (user, [(item, type, ts)...], n_history)."""
    def table(rows):
        return pa.Table.from_pylist([
            {"user_id": u, "items": [e[0] for e in ev], "event_types": [e[1] for e in ev],
             "timestamps": [int(e[2]) for e in ev], "n_history": n} for u, ev, n in rows], schema=SEQUENCE_SCHEMA)
    root = str(root)
    for split, rows in (("train", train_rows), ("shadow", shadow_rows)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        pq.write_table(table(rows), os.path.join(root, split, "part-00000.parquet"))
    items = sorted({e[0] for _, ev, _ in list(shadow_rows) + list(train_rows) for e in ev} | set(extra_items))
    pq.write_table(pa.Table.from_pylist(
        [{"item_id": i, "index": 3 + k, "count": 1, "first_seen": 0, "cold_start": i in cold}
         for k, i in enumerate(items)], schema=VOCAB_SCHEMA), os.path.join(root, "vocabulary.parquet"))
    return root


class StaticRecommender(Recommender):
    """Same scores for every history: a fixed value per title (per task)."""

    def __init__(self, values: dict[str, float], description="static"):
        self.values, self.description = values, description

    def set_catalog(self, item_ids, vectors=None):
        self.vector = np.array([self.values.get(i, 0.0) for i in item_ids], np.float32)

    def score(self, histories, task, delay=0):
        return np.tile(self.vector, (len(histories), 1))


class ChainRecommender(Recommender):
    """Knows the planted structure (item k is followed by item k+1): the oracle-ish candidate.
    `sign=-1` ranks the true next title last instead (a model that must never be promoted)."""

    def __init__(self, n_items: int, sign: float = 1.0, tasks=()):
        self.n, self.sign, self.tasks = n_items, sign, tuple(tasks)
        self.description = "chain oracle" if sign > 0 else "anti-oracle"
        self.delays_seen: set[int] = set()

    def set_catalog(self, item_ids, vectors=None):
        self.pos = {item: i for i, item in enumerate(item_ids)}
        self.c = len(item_ids)

    def score(self, histories, task, delay=0):
        self.delays_seen.add(delay)
        out = np.zeros((len(histories), self.c), np.float32)
        for b, h in enumerate(histories):
            nxt = (int(h.items[-1][1:]) + 1 + delay) % self.n
            out[b, self.pos[f"i{nxt}"]] = self.sign
        return out


def chain_data(root, users=60, n_items=30, length=12, history=4, noise=0.2, seed=0) -> str:
    rng = np.random.default_rng(seed)
    shadow, train = [], []
    for u in range(users):
        k = int(rng.integers(n_items))
        events = []
        for t in range(length):
            events.append((f"i{k}", "play", 1000 * DAY + t * 60))
            k = (k + 1) % n_items if rng.random() > noise else int(rng.integers(n_items))
        shadow.append((f"u{u}", events, history))
        train.append((f"u{u}", [(f"i{int(rng.integers(n_items))}", "play", 900 * DAY + t) for t in range(5)], 0))
    return write_sequences(root, shadow, train, extra_items=[f"i{k}" for k in range(n_items)])


# --- replay ---------------------------------------------------------------------------------------------
HAND = [("u1", [("a", "play", 10), ("b", "play", 20), ("c", "add", 30), ("d", "play", 40)], 1)]


def _hand_window(tmp_path):
    root = write_sequences(tmp_path, HAND, cold=("d",))
    from genrec.data import read_split
    return root, Window.from_table(read_split(root, "shadow"))


def test_requests_follow_next_event_of_each_task_and_delay(tmp_path):
    _, window = _hand_window(tmp_path)
    catalog = {"a": 0, "b": 1, "c": 2, "d": 3}
    cold = np.array([False, False, False, True])
    req = build_requests(window, catalog, cold, ["play", "add"], [0, 1, 2], min_history=1)
    as_pairs = {key: list(zip(r.prefix.tolist(), r.target.tolist())) for key, r in req.items()}
    assert as_pairs[("play", 0)] == [(1, 1), (2, 3), (3, 3)]
    assert as_pairs[("add", 0)] == [(1, 2), (2, 2)]
    assert as_pairs[("play", 1)] == [(1, 3), (2, 3)]  # requests 2 and 3 served from requests 1 and 2
    assert as_pairs[("add", 1)] == [(1, 2)]  # request 1 would use request 0 (empty history): skipped
    assert as_pairs[("play", 2)] == [(1, 3)]
    assert as_pairs[("add", 2)] == []
    assert req[("play", 0)].cold.tolist() == [False, True, True]
    assert req[("play", 1)].activity.tolist() == [2, 3]
    hist = window.history(0, 2, max_history=512)
    assert list(hist.items) == ["a", "b"] and hist.request_time == 30
    assert list(window.history(0, 3, max_history=1).items) == ["c"]


def test_hand_computed_metrics_and_slices(tmp_path):
    root, _ = _hand_window(tmp_path)
    cand = StaticRecommender({"a": 0.1, "b": 0.4, "c": 0.3, "d": 0.2})  # ranks b1 c2 d3 a4
    base = StaticRecommender({})  # all ties: pessimistic rank 4 for every target
    config = ShadowConfig(delays=(0,), n_resamples=50)
    result = shadow_evaluate_recommenders(root, cand, base, config=config)
    rows = {(r["task"], r["slice"], r["metric"]): r for r in result["rows"]}
    play = rows[("play", "all", "mrr")]
    assert play["candidate"] == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    assert play["baseline"] == pytest.approx(0.25)
    assert play["n_requests"] == 3 and play["n_users"] == 1
    assert rows[("play", "all", "ndcg@10")]["candidate"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert rows[("play", "all", "recall@10")]["candidate"] == 1.0
    assert rows[("play", "cold_start", "mrr")]["candidate"] == pytest.approx(1 / 3)
    assert rows[("play", "cold_start", "mrr")]["n_requests"] == 2
    assert rows[("add", "all", "mrr")]["candidate"] == pytest.approx(0.5)  # c ranks 2, twice
    assert ("add", "cold_start", "mrr") not in rows  # no cold-start target for add
    assert rows[("play", "history_1-9", "mrr")]["n_requests"] == 3
    assert result["tasks"] == ["add", "play"] and result["primary"]["task"] == "play"  # play: most events
    assert result["n_requests"] == 5 and result["catalog_size"] == 4


def test_titles_not_launched_when_recommendations_are_computed_are_not_ranked(tmp_path):
    """The catalog is the one of the moment after the history: d (launching at 35) is not ranked
    for requests computed at 20 or 30, and as the target of the request computed at 30 it is a miss."""
    from genrec.events import TITLE_SCHEMA

    root, _ = _hand_window(tmp_path)
    pq.write_table(pa.Table.from_pylist([{"item_id": i, "launch_date": launch} for i, launch in
                                         (("a", 0), ("b", None), ("c", 5), ("d", 35))], schema=TITLE_SCHEMA),
                   os.path.join(root, "titles.parquet"))
    cand = StaticRecommender({"a": 0.1, "b": 0.4, "c": 0.3, "d": 0.5})
    base = StaticRecommender({})  # all ties: ranked last among the titles launched by then
    result = shadow_evaluate_recommenders(root, cand, base, config=ShadowConfig(delays=(0,), n_resamples=50))
    rows = {(r["task"], r["slice"], r["metric"]): r for r in result["rows"]}
    # play requests computed at 20 (target b), 30 (target d, not launched), 40 (target d)
    assert rows[("play", "all", "mrr")]["candidate"] == pytest.approx((1 + 0 + 1) / 3)
    assert rows[("play", "all", "mrr")]["baseline"] == pytest.approx((1 / 3 + 0 + 1 / 4) / 3)
    assert rows[("add", "all", "mrr")]["candidate"] == pytest.approx(0.5)  # c behind b only, twice
    assert result["catalog_launch_dates"] == 3
    from genrec.shadow import render_html, render_markdown
    assert "catalog: 4 titles (3 ranked only once launched)" in render_markdown(result)
    assert "catalog: 4 titles (3 ranked only once launched)" in render_html(result)
    os.remove(os.path.join(root, "titles.parquet"))  # no launch dates: every title competes everywhere
    result = shadow_evaluate_recommenders(root, cand, base, config=ShadowConfig(delays=(0,), n_resamples=50))
    rows = {(r["task"], r["slice"], r["metric"]): r for r in result["rows"]}
    assert rows[("play", "all", "mrr")]["candidate"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert result["catalog_launch_dates"] == 0


def test_available_ranks_equal_reference_ranks_over_launched_titles():
    from genrec.metrics import target_ranks
    from genrec.shadow import available_ranks

    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, size=(64, 50)).astype(np.float32)  # many ties
    targets = rng.integers(-1, 50, size=64)
    launch = rng.integers(0, 100, size=50)
    times = rng.integers(0, 100, size=64)
    expected = []
    for row, target, time in zip(scores, targets, times):
        live = launch <= time
        if target < 0 or not live[target]:
            expected.append(0)
            continue
        expected.append(int(target_ranks(row[live][None], np.array([np.flatnonzero(live).tolist().index(target)]))[0]))
    assert available_ranks(scores, targets, launch, times).tolist() == expected
    shared = np.broadcast_to(scores[0], (64, 50))  # stride-0 rows (popularity)
    expected_shared = available_ranks(np.array(shared), targets, launch, times).tolist()
    assert available_ranks(shared, targets, launch, times).tolist() == expected_shared


def test_delay_is_passed_to_the_recommender(tmp_path):
    root = chain_data(tmp_path, users=10)
    cand = ChainRecommender(30)
    result = shadow_evaluate_recommenders(root, cand, StaticRecommender({}),
                                          config=ShadowConfig(n_resamples=50))
    assert cand.delays_seen == {0, 1, 2}
    mrr = {r["delay"]: r["candidate"] for r in result["rows"] if r["slice"] == "all" and r["metric"] == "mrr"}
    assert mrr[0] > 0.5 and mrr[1] > 0.5 and mrr[2] > 0.4  # the aligned head is used at every delay


def test_fast_ranks_equal_reference_ranks():
    from genrec.metrics import target_ranks
    from genrec.shadow import fast_target_ranks

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(64, 50)).astype(np.float32)  # many ties
    targets = rng.integers(-1, 50, size=64)
    assert fast_target_ranks(scores, targets).tolist() == target_ranks(scores, targets).tolist()
    shared = np.broadcast_to(scores[0], (64, 50))  # stride-0 rows: the sorted path
    assert fast_target_ranks(shared, targets).tolist() == target_ranks(np.array(shared), targets).tolist()


# --- bootstrap ------------------------------------------------------------------------------------------
def test_bootstrap_columns_agree_with_one_metric_at_a_time_and_with_chunking():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 40, size=300)
    cand, base = rng.random((300, 2)), rng.random((300, 2))
    by_user = [(cand[users == u] - base[users == u]).mean(axis=0) for u in np.unique(users)]
    many = paired_bootstrap_columns(cand, base, users, 200, 0.9, 5)
    assert many["diff"] == pytest.approx(np.mean(by_user, axis=0))  # users weigh equally, not requests
    for j in range(2):
        one = paired_bootstrap(cand[:, j], base[:, j], users, n_resamples=200, confidence=0.9, seed=5)
        assert (many["lower"][j], many["upper"][j]) == pytest.approx((one.lower, one.upper))  # same draws
        assert one.lower < one.diff < one.upper and one.n_users == 40
    chunked = paired_bootstrap_columns(cand, base, users, 200, 0.9, 5, budget=100)
    assert chunked["lower"] == pytest.approx(many["lower"], abs=0.03)  # other draws, same distribution


def test_bootstrap_interval_covers_the_true_difference():
    """Per-user true gain 0.05; the 90% interval should cover it in most of 40 seeded worlds."""
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        users = np.repeat(np.arange(200), 3)
        base = rng.random(600)
        cand = base + 0.05 + rng.normal(0, 0.2, size=600)
        ci = paired_bootstrap_columns(cand[:, None], base[:, None], users, 300, 0.9, seed)
        covered += ci["lower"][0] <= 0.05 <= ci["upper"][0]
    assert covered >= 32


# --- decision -------------------------------------------------------------------------------------------
def test_oracle_is_promoted_over_popularity(tmp_path):
    root = chain_data(tmp_path)
    out = tmp_path / "out"
    pop = PopularityRecommender.from_sequences(root)
    result = shadow_evaluate_recommenders(root, ChainRecommender(30), pop, out_dir=str(out),
                                          config=ShadowConfig(n_resamples=200),
                                          baseline_info={"baseline_kind": "popularity"})
    assert result["decision"] == "promote", result["reasons"]
    assert result["primary"]["lower"] > 0 and result["primary"]["candidate_mrr"] > result["primary"]["baseline_mrr"]
    assert any("popularity" in r for r in result["reasons"])
    saved = json.loads((out / "shadow.json").read_text())
    assert saved["decision"] == "promote" and len(saved["rows"]) == len(result["rows"])
    assert "Decision: promote" in (out / "shadow.md").read_text()
    assert "<table>" in (out / "shadow.html").read_text()


def test_worse_candidate_is_held_with_reasons(tmp_path):
    root = chain_data(tmp_path)
    result = shadow_evaluate_recommenders(root, ChainRecommender(30, sign=-1), ChainRecommender(30),
                                          config=ShadowConfig(n_resamples=100))
    assert result["decision"] == "hold"
    assert any("not above min_gain" in r for r in result["reasons"])
    assert any("more than the 2.0% tolerance" in r for r in result["reasons"])


def _row(task, delay, cand, base, lower, upper):
    return {"task": task, "delay": delay, "slice": "all", "metric": "mrr", "candidate": cand, "baseline": base,
            "diff": cand - base, "lower": lower, "upper": upper}


def test_decision_rule_on_hand_rows():
    config = ShadowConfig(delays=(0, 1), tolerance=0.05, min_gain=0.0)
    good = [_row("play", 0, 0.30, 0.20, 0.05, 0.15), _row("play", 1, 0.28, 0.20, 0.04, 0.1),
            _row("add", 0, 0.195, 0.20, -0.01, 0.0), _row("add", 1, 0.20, 0.20, -0.01, 0.01)]
    assert decide(good, ["play", "add"], "play", config)[0] == "promote"  # add -2.5% is within 5%
    bad_guard = good[:2] + [_row("add", 0, 0.18, 0.20, -0.03, -0.01), good[3]]
    decision, reasons = decide(bad_guard, ["play", "add"], "play", config)
    assert decision == "hold" and any("add MRR at delay 0 drops 10.0%" in r for r in reasons)
    weak = [_row("play", 0, 0.30, 0.20, -0.001, 0.2)] + good[1:]
    assert decide(weak, ["play", "add"], "play", config)[0] == "hold"
    higher_bar = ShadowConfig(delays=(0, 1), tolerance=0.05, min_gain=0.06)
    assert decide(good, ["play", "add"], "play", higher_bar)[0] == "hold"
    nan = [_row("play", 0, float("nan"), 0.2, float("nan"), float("nan"))] + good[1:]
    decision, reasons = decide(nan, ["play", "add"], "play", config)
    assert decision == "hold" and "NaN" in reasons[0]
    assert decide(good, ["play", "add"], "other", config)[0] == "hold"


# --- every bad input holds -----------------------------------------------------------------------------
class NanRecommender(StaticRecommender):
    def score(self, histories, task, delay=0):
        return np.full((len(histories), len(self.vector)), np.nan, np.float32)


class BrokenRecommender(StaticRecommender):
    def score(self, histories, task, delay=0):
        raise RuntimeError("CUDA out of memory")


class WrongShapeRecommender(StaticRecommender):
    def score(self, histories, task, delay=0):
        return np.zeros((len(histories), 2), np.float32)


@pytest.mark.parametrize("candidate, reason", [
    (NanRecommender({}), "non-finite scores"),
    (BrokenRecommender({}), "RuntimeError: CUDA out of memory"),
    (WrongShapeRecommender({}), "shape"),
])
def test_failing_candidate_holds(tmp_path, candidate, reason):
    root = chain_data(tmp_path, users=5)
    result = shadow_evaluate_recommenders(root, candidate, StaticRecommender({}), out_dir=str(tmp_path / "o"),
                                          config=ShadowConfig(n_resamples=10))
    assert result["decision"] == "hold" and reason in result["reasons"][0]
    assert json.loads((tmp_path / "o" / "shadow.json").read_text())["decision"] == "hold"


def test_empty_window_and_missing_data_hold(tmp_path):
    only_history = write_sequences(tmp_path / "a", [("u1", [("a", "play", 1), ("b", "play", 2)], 2)])
    r = shadow_evaluate_recommenders(only_history, ChainRecommender(2), StaticRecommender({}))
    assert r["decision"] == "hold" and "no events" in r["reasons"][0]
    no_usable = write_sequences(tmp_path / "b", [("u1", [("a", "play", 1)], 0)])  # only an empty-history request
    r = shadow_evaluate_recommenders(no_usable, StaticRecommender({}), StaticRecommender({}))
    assert r["decision"] == "hold" and "no request" in r["reasons"][0]
    r = shadow_evaluate_recommenders(str(tmp_path / "missing"), StaticRecommender({}), StaticRecommender({}))
    assert r["decision"] == "hold" and "missing" in r["reasons"][0]
    no_task = chain_data(tmp_path / "c", users=3)
    r = shadow_evaluate_recommenders(no_task, ChainRecommender(30, tasks=("add",)), StaticRecommender({}))
    assert r["decision"] == "hold" and "no task" in r["reasons"][0]


def test_unloadable_models_hold(tmp_path):
    root = chain_data(tmp_path / "d", users=5)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{broken")
    r = shadow_evaluate(root, str(tmp_path / "nope"), str(tmp_path / "o1"))
    assert r["decision"] == "hold" and "candidate" in r["reasons"][0] and "could not be loaded" in r["reasons"][0]
    assert (tmp_path / "o1" / "shadow.html").exists()
    r = shadow_evaluate(root, str(tmp_path / "junk"), str(tmp_path / "o2"), baseline_dir=str(tmp_path / "junk"))
    assert r["decision"] == "hold"


def test_config_validation():
    with pytest.raises(ConfigError):
        ShadowConfig(delays=())
    with pytest.raises(ConfigError):
        ShadowConfig(delays=(0, 1), primary_delay=2)
    assert ShadowConfig(delays=(1, 2)).delay_for_decision == 1
    assert math.isclose(ShadowConfig().confidence, 0.95)


# --- with a real (untrained) model folder ---------------------------------------------------------------
def tiny_model_dir(path, sequences_root) -> str:
    """An untrained model folder in the training step's format (safetensors + config.json + vocabulary)."""
    import dataclasses
    import shutil

    from safetensors.torch import save_file

    from genrec.data import read_vocabulary
    from genrec.model import GenerativeRecommender, ModelConfig

    vocab = read_vocabulary(sequences_root)
    config = ModelConfig(num_items=len(vocab), num_tasks=1, max_len=20)
    model = GenerativeRecommender(config)
    os.makedirs(path)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(path, "model.safetensors"))
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump({"preset": "tiny", "model": dataclasses.asdict(config), "tasks": ["play"], "mtp_depth": 0,
                   "description": "untrained tiny transformer"}, fh)
    shutil.copyfile(os.path.join(sequences_root, "vocabulary.parquet"), os.path.join(path, "vocabulary.parquet"))
    return str(path)


def test_real_model_folder_against_popularity_and_broken_champion(tmp_path):
    root = chain_data(tmp_path / "data", users=20)
    model = tiny_model_dir(tmp_path / "model", root)
    config = ShadowConfig(n_resamples=50)
    result = shadow_evaluate(root, model, str(tmp_path / "o1"), config)
    assert result["baseline_kind"] == "popularity" and "popularity" in result["baseline"]
    assert result["candidate"] == "untrained tiny transformer" and result["n_requests"] > 0
    assert result["decision"] in ("promote", "hold") and result["rows"]
    champion = tmp_path / "champion"
    champion.mkdir()
    (champion / "published.json").write_text(json.dumps({"run_id": "run-7"}))
    broken = shadow_evaluate(root, model, str(tmp_path / "o2"), config, baseline_dir=str(champion))
    assert broken["decision"] == "hold" and "baseline (champion)" in broken["reasons"][0]
    assert broken["baseline_run_id"] == "run-7"
    same = shadow_evaluate(root, model, str(tmp_path / "o3"), config, baseline_dir=model)
    assert same["decision"] == "hold" and same["primary"]["diff"] == 0.0  # a model never beats itself
    assert same["baseline_kind"] == "champion" and same["baseline"] == f"champion model at {model}"
    assert same["baseline_description"] == "untrained tiny transformer"


# --- replay equivalence: each history encoded once, same results as one request at a time ----------------
class HashRecommender(Recommender):
    """Scores 0..3 (many ties) drawn from a hash of the whole history, task and delay: any change in
    which history, head or target a request is scored with changes its rank."""

    def __init__(self, salt: int = 0):
        self.salt, self.description = salt, f"hash {salt}"

    def set_catalog(self, item_ids, vectors=None):
        self.c = len(item_ids)

    def score(self, histories, task, delay=0):
        import zlib

        out = np.zeros((len(histories), self.c), np.float32)
        for b, h in enumerate(histories):
            key = repr((self.salt, list(h.items), list(h.event_types), [int(t) for t in h.timestamps],
                        h.request_time, task, delay))
            out[b] = np.random.default_rng(zlib.crc32(key.encode())).integers(0, 4, size=self.c)
        return out


class CountingRecommender(HashRecommender):
    """Records every history (by request time: unique per event here) and the heads asked for it."""

    def __init__(self, salt: int = 0):
        super().__init__(salt)
        self.calls: list[tuple[int, tuple]] = []  # (batch size, heads)
        self.heads_by_history: dict[int, list[tuple]] = {}

    def score_heads(self, histories, heads):
        self.calls.append((len(histories), tuple(heads)))
        for h in histories:
            self.heads_by_history.setdefault(h.request_time, []).append(tuple(heads))
        return super().score_heads(histories, heads)


def multitask_data(root, users=14, n_items=12, seed=4) -> str:
    """Users with 1-15 events of three types, globally unique timestamps, some cold-start titles."""
    rng = np.random.default_rng(seed)
    shadow, train, t = [], [], 1000 * DAY
    for u in range(users):
        length = int(rng.integers(1, 16))
        events = []
        for _ in range(length):
            t += int(rng.integers(1, 100))
            events.append((f"i{int(rng.integers(n_items))}", str(rng.choice(["play", "add", "rate"], p=[.6, .3, .1])), t))
        shadow.append((f"u{u}", events, int(rng.integers(0, length + 1))))
        train.append((f"u{u}", [(f"i{int(rng.integers(n_items))}", "play", 900 * DAY + k) for k in range(3)], 0))
    return write_sequences(root, shadow, train, cold=("i3", "i7"), extra_items=[f"i{k}" for k in range(n_items)])


EQUIV_CONFIG = ShadowConfig(delays=(0, 1, 2), batch_size=5, max_history=4, min_history=2, n_resamples=30,
                            activity_edges=(1, 4, 8), recent_days=None)


def one_request_at_a_time(root, candidate, baseline, config):
    """Reference replay: every (task, delay) request scored on its own with `score` and ranked with
    genrec.metrics.target_ranks (the behaviour before histories were shared across heads)."""
    from genrec.data import read_split
    from genrec.metrics import target_ranks
    from genrec.shadow import metric_rows, read_catalog

    item_ids, cold = read_catalog(root)
    window = Window.from_table(read_split(root, "shadow"))
    tasks = sorted(set(window.event_types[window.window_mask()].tolist()))
    for rec in (candidate, baseline):
        rec.set_catalog(item_ids)
    requests = build_requests(window, {i: k for k, i in enumerate(item_ids)}, cold, tasks, config.delays,
                              config.min_history)
    rows = []
    for (task, delay), req in requests.items():
        if len(req) == 0:
            continue
        ranks = [np.array([target_ranks(np.asarray(rec.score([window.history(int(u), int(p), config.max_history)],
                                                                 task, delay)), np.array([t]))[0]
                           for u, p, t in zip(req.user, req.prefix, req.target)]) for rec in (candidate, baseline)]
        rows += metric_rows(task, delay, req, ranks[0], ranks[1], config)
    return rows, requests, window


@pytest.mark.parametrize("make_pair", [
    lambda root: (HashRecommender(1), PopularityRecommender.from_sequences(root)),
    lambda root: (ChainRecommender(12), HashRecommender(2)),
])
def test_replay_matches_one_request_at_a_time(tmp_path, make_pair):
    root = multitask_data(tmp_path)
    rows, requests, _ = one_request_at_a_time(root, *make_pair(root), EQUIV_CONFIG)
    result = shadow_evaluate_recommenders(root, *make_pair(root), config=EQUIV_CONFIG)
    assert len(rows) > 40 and {r["task"] for r in rows} == {"play", "add", "rate"}
    assert json.dumps(result["rows"]) == json.dumps(rows)  # exact (NaN included): same ranks, same draws
    assert result["n_requests"] == sum(len(r) for r in requests.values())


# (candidate, baseline, requests) MRR on all titles, recorded from the per-(task, delay) replay
RECORDED_MRR = {
    ("add", 0): (0.191311, 0.143356, 56), ("add", 1): (0.170147, 0.136216, 52), ("add", 2): (0.166789, 0.135622, 46),
    ("play", 0): (0.194406, 0.137444, 60), ("play", 1): (0.190218, 0.137247, 57), ("play", 2): (0.160629, 0.13669, 51),
    ("rate", 0): (0.183991, 0.127778, 30), ("rate", 1): (0.199875, 0.127778, 27), ("rate", 2): (0.253346, 0.139167, 22),
}


def test_replay_metrics_recorded_before_sharing_histories(tmp_path):
    """MRR (all titles) per task and delay as the per-(task, delay) replay computed them: a refactor
    of the replay must not move any of them."""
    root = multitask_data(tmp_path)
    result = shadow_evaluate_recommenders(root, HashRecommender(1), PopularityRecommender.from_sequences(root),
                                          config=EQUIV_CONFIG)
    got = {(r["task"], r["delay"]): (round(r["candidate"], 6), round(r["baseline"], 6), r["n_requests"])
           for r in result["rows"] if r["slice"] == "all" and r["metric"] == "mrr"}
    assert got == RECORDED_MRR


def test_each_history_is_scored_once_per_role_with_exactly_the_heads_it_serves(tmp_path):
    from genrec.data import read_split

    root = multitask_data(tmp_path)
    candidate, baseline = CountingRecommender(1), CountingRecommender(2)
    result = shadow_evaluate_recommenders(root, candidate, baseline, config=EQUIV_CONFIG)
    window = Window.from_table(read_split(root, "shadow"))
    _, requests, _ = one_request_at_a_time(root, HashRecommender(), HashRecommender(), EQUIV_CONFIG)
    expected: dict[int, set] = {}  # history (by its request time) -> the (task, delay) requests it serves
    for head, req in requests.items():
        for u, p in zip(req.user, req.prefix):
            expected.setdefault(int(window.timestamps[window.offsets[u] + p]), set()).add(head)
    assert result["n_requests"] > 2 * len(expected)  # histories really are shared across heads
    for rec in (candidate, baseline):
        assert all(len(calls) == 1 for calls in rec.heads_by_history.values())  # once per role
        assert {t: set(calls[0]) for t, calls in rec.heads_by_history.items()} == expected
        assert max(n for n, _ in rec.calls) <= EQUIV_CONFIG.batch_size
        assert sum(n * len(heads) for n, heads in rec.calls) == result["n_requests"]  # no head scored in vain


class FailsOnOneHead(StaticRecommender):
    def score(self, histories, task, delay=0):
        if (task, delay) == ("add", 1):
            raise ValueError("no add head at delay 1")
        return super().score(histories, task, delay)


class FailsWithSeveralHeads(StaticRecommender):
    def score_heads(self, histories, heads):
        if len(heads) > 1:
            raise MemoryError("heads do not fit")
        return super().score_heads(histories, heads)


class MissingHeadOutput(StaticRecommender):
    def score_heads(self, histories, heads):
        return super().score_heads(histories, heads)[:-1]


@pytest.mark.parametrize("role", ["candidate", "baseline"])
@pytest.mark.parametrize("broken, reason", [
    (FailsOnOneHead({}), "{role} failed to score task 'add' at delay 1: ValueError: no add head at delay 1"),
    (FailsWithSeveralHeads({}), "{role} failed to score tasks and delays ["),
    (MissingHeadOutput({}), "{role} returned "),
])
def test_a_failing_head_holds_naming_role_task_and_delay(tmp_path, broken, reason, role):
    root = multitask_data(tmp_path)
    pair = (broken, StaticRecommender({})) if role == "candidate" else (StaticRecommender({}), broken)
    result = shadow_evaluate_recommenders(root, *pair, config=EQUIV_CONFIG)
    assert result["decision"] == "hold" and result["reasons"][0].startswith(reason.format(role=role))
    assert result["rows"] == []
