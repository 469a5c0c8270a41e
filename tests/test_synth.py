"""The built-in generator: deterministic, canonical schemas, and the planted structure is there."""
import numpy as np
import pyarrow.compute as pc

from genrec.events import EVENT_SCHEMA, TITLE_SCHEMA
from genrec.synth import DAY, END_TIME, SynthConfig, generate

SMALL = SynthConfig(users=120, titles=120, events_per_user=30, days=30, seed=3)


def test_same_seed_same_data_and_canonical_schemas():
    a, b = generate(SMALL), generate(SMALL)
    assert a.events.equals(b.events) and a.titles.equals(b.titles)
    assert a.events.schema.equals(EVENT_SCHEMA) and a.titles.schema.equals(TITLE_SCHEMA)
    assert not generate(SynthConfig(**{**SMALL.__dict__, "seed": 4})).events.equals(a.events)


def test_events_respect_time_range_and_launch_dates():
    data = generate(SMALL)
    ts = data.events["timestamp"].to_numpy()
    assert ts.min() >= END_TIME - SMALL.days * DAY - 60 and ts.max() <= END_TIME
    launch = dict(zip(data.titles["item_id"].to_pylist(), data.titles["launch_date"].to_pylist()))
    items = data.events["item_id"].to_pylist()
    assert all(launch[i] <= t + 60 for i, t in zip(items, ts))  # nobody plays a title before launch


def test_several_event_types_and_cold_start_titles_in_final_week():
    data = generate(SMALL)
    types = set(pc.unique(data.events["event_type"]).to_pylist())
    assert {"play", "like", "search"} <= types
    launch = data.titles["launch_date"].to_numpy()
    cold = set(np.asarray(data.titles["item_id"])[launch > END_TIME - 7 * DAY])
    assert cold, "some titles must launch inside the final week"
    played = set(data.events.filter(pc.equal(data.events["event_type"], "play"))["item_id"].to_pylist())
    assert cold & played, "cold-start titles must be played in the final week"


def _top_successor_share(users, items):
    pairs: dict = {}
    for (u1, i1), (u2, i2) in zip(zip(users, items), zip(users[1:], items[1:])):
        if u1 == u2:
            pairs.setdefault(i1, []).append(i2)
    return np.mean([max(map(v.count, set(v))) / len(v) for v in pairs.values() if len(v) >= 10])


def test_sequels_follow_their_predecessor_more_often_than_chance():
    """The planted sequential pattern: each title's most common successor is far more common than
    when every user's plays are shuffled (same users, titles and taste, no order)."""
    data = generate(SMALL)
    plays = data.events.filter(pc.equal(data.events["event_type"], "play"))
    users, items = np.asarray(plays["user_id"]), np.asarray(plays["item_id"])
    rng = np.random.default_rng(0)
    shuffled = items.copy()
    for u in np.unique(users):
        idx = np.flatnonzero(users == u)
        shuffled[idx] = rng.permutation(items[idx])
    ordered = _top_successor_share(users.tolist(), items.tolist())
    assert ordered > 1.5 * _top_successor_share(users.tolist(), shuffled.tolist())
