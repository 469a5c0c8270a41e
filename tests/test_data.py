"""Data loading: vocabulary lookup, rank shares, windows and their (task, depth) targets."""
from __future__ import annotations

import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec.data import (BucketedBatches, Vocabulary, batch_indices, build_windows, gap_buckets, launch_times, read_split,
                         read_vocabulary, task_names, window_spans)
from genrec.errors import ConfigError, InputError
from genrec.events import NEVER, NUM_RESERVED, SEQUENCE_SCHEMA, UNK_INDEX
from genrec.training import TrainConfig

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "testdata", "model"))
from seqfixtures import write_sequences  # noqa: E402


@pytest.fixture(scope="module")
def seq_dir(tmp_path_factory):
    return write_sequences(str(tmp_path_factory.mktemp("seq")), users=10, shards=3, extra_titles=2)


def test_vocabulary_maps_ids_vectorised_and_unknown_to_unk(seq_dir):
    vocab = read_vocabulary(seq_dir)
    assert vocab.item_ids[:NUM_RESERVED] == ("<pad>", "<unk>", "<mask>")
    known = vocab.item_ids[NUM_RESERVED + 4]
    assert vocab.lookup([known, "t9999"]).tolist() == [NUM_RESERVED + 4, UNK_INDEX]
    assert vocab.positions([known, "t9999"]).tolist() == [NUM_RESERVED + 4, -1]
    assert len(vocab.fingerprint) == 16 and vocab.counts[:NUM_RESERVED].sum() == 0


def test_missing_inputs_raise_input_errors_naming_the_path(tmp_path):
    with pytest.raises(InputError, match="vocabulary"):
        read_vocabulary(str(tmp_path / "nope.parquet"))
    with pytest.raises(InputError, match="no Parquet shards"):
        read_split(str(tmp_path), "train")


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_rank_shares_are_disjoint_deterministic_and_cover_the_split(seq_dir, world):
    shares = [read_split(seq_dir, "train", r, world)["user_id"].to_pylist() for r in range(world)]
    flat = [u for s in shares for u in s]
    assert sorted(flat) == sorted(read_split(seq_dir, "train")["user_id"].to_pylist())
    assert len(set(flat)) == len(flat)
    assert shares == [read_split(seq_dir, "train", r, world)["user_id"].to_pylist() for r in range(world)]


def _table(items, types, times, n_history=0):
    return pa.Table.from_pylist([{"user_id": "u", "items": items, "event_types": types, "timestamps": times,
                                  "n_history": n_history}], schema=SEQUENCE_SCHEMA)


def test_targets_are_the_next_events_of_each_task_at_each_depth(seq_dir):
    vocab = read_vocabulary(seq_dir)
    ids = list(vocab.item_ids[NUM_RESERVED:NUM_RESERVED + 6])
    types = ["play", "like", "play", "play", "like", "play"]
    table = _table(ids, types, [0, 10, 20, 1000, 1010, 100_000])
    w = build_windows(table, vocab, ("like", "play"), max_len=8, mtp_depth=1)
    idx = vocab.lookup(ids)
    # head layout: task * (depth + 1) + j; tasks: like=0, play=1
    like0, like1, play0, play1 = w.targets[0]
    assert like0[:6].tolist() == [idx[1], idx[4], idx[4], idx[4], 0, 0]
    # depth j: the first event of the task at position >= t + 1 + j (the request a cache filled at t
    # serves j events later), whatever event types come in between
    assert like1[:6].tolist() == [idx[4], idx[4], idx[4], 0, 0, 0]
    assert play0[:6].tolist() == [idx[2], idx[2], idx[3], idx[5], idx[5], 0]
    assert play1[:6].tolist() == [idx[2], idx[3], idx[5], idx[5], 0, 0]
    assert w.types[0].tolist() == [2, 1, 2, 2, 1, 2, 0, 0]
    assert w.next_task[0, :6].tolist() == [0, 1, 1, 0, 1, -1]
    assert w.gaps[0, :6].tolist() == gap_buckets(np.array([0, 10, 20, 1000, 1010, 100_000]), 32).tolist()
    assert w.gaps[0, :3].tolist() == [0, 3, 3]  # log2(11) -> 3


def test_long_sequences_are_cut_from_the_end_and_targets_cross_windows(seq_dir):
    vocab = read_vocabulary(seq_dir)
    ids = list(vocab.item_ids[NUM_RESERVED:NUM_RESERVED + 7])
    table = _table(ids, ["play"] * 7, list(range(7)))
    w = build_windows(table, vocab, ("play",), max_len=3, mtp_depth=0)
    idx = vocab.lookup(ids)
    assert w.items.tolist() == [idx[4:7].tolist(), idx[1:4].tolist(), [idx[0], 0, 0]]
    assert w.starts.tolist() == [4, 1, 0]
    assert w.targets[1, 0, 2] == idx[4]  # last position of a window predicts the next window's first event


def test_overlapping_windows_count_each_target_once_with_more_context(seq_dir):
    vocab = read_vocabulary(seq_dir)
    n = 23
    ids = [vocab.item_ids[NUM_RESERVED + i % 7] for i in range(n)]
    table = _table(ids, ["play"] * n, list(range(n)), n_history=1)
    assert window_spans(n, 8, 3) == [(15, 23, 20), (12, 20, 17), (9, 17, 14), (6, 14, 11), (3, 11, 8), (0, 8, 0)]
    assert window_spans(n, 8) == [(15, 23, 15), (7, 15, 7), (0, 7, 0)]
    plain = build_windows(table, vocab, ("play",), max_len=8, mtp_depth=1)
    for stride in (3, 5, 8):
        w = build_windows(table, vocab, ("play",), max_len=8, mtp_depth=1, stride=stride)
        win, head, pos = np.nonzero(w.targets >= NUM_RESERVED)
        where = w.starts[win] + pos  # position of each target's query in the sequence
        assert len(set(zip(where.tolist(), head.tolist()))) == len(where)  # no (position, head) twice
        assert len(where) == (plain.targets >= NUM_RESERVED).sum()  # every target exactly once
        assert sorted(w.targets[win, head, pos].tolist()) == sorted(plain.targets[plain.targets >= NUM_RESERVED].tolist())
        context = pos[w.starts[win] > 0]  # events before the query inside its window
        assert context.min() >= 8 - stride
        checked = build_windows(table, vocab, ("play",), max_len=8, mtp_depth=0, stride=stride, predictions_only=True)
        assert checked.predict.sum() == plain.predict.sum() == n - 1  # validation counts each event once too
    with pytest.raises(ConfigError, match="window_stride"):
        TrainConfig(max_len=8, window_stride=9)


def test_validation_predicts_only_window_events(seq_dir):
    vocab = read_vocabulary(seq_dir)
    ids = list(vocab.item_ids[NUM_RESERVED:NUM_RESERVED + 5]) + ["t9999"]
    table = _table(ids, ["play"] * 6, list(range(6)), n_history=4)
    w = build_windows(table, vocab, ("play",), max_len=10, mtp_depth=0, predictions_only=True)
    assert np.flatnonzero(w.predict[0]).tolist() == [3, 4]  # predicting events 4 and 5
    assert w.targets[0, 0, 4] == UNK_INDEX  # a title unknown to training is a (counted) miss


def test_target_times_and_launches_say_which_targets_were_new_titles(seq_dir):
    vocab = read_vocabulary(seq_dir)
    ids = list(vocab.item_ids[NUM_RESERVED:NUM_RESERVED + 4])
    day = 86_400
    table = _table([ids[0], ids[1], ids[2], ids[1]], ["play"] * 4, [0, 10 * day, 11 * day, 20 * day])
    w = build_windows(table, vocab, ("play",), max_len=8, mtp_depth=1)
    assert w.target_times[0, 0, :4].tolist() == [10 * day, 11 * day, 20 * day, 0]
    assert w.target_times[0, 1, :4].tolist() == [11 * day, 20 * day, 0, 0]
    first_seen = np.zeros(len(vocab), np.int64)
    idx = vocab.lookup(ids)
    first_seen[idx] = [0, 10 * day, 1 * day, 30 * day]
    launch = launch_times(Vocabulary(vocab.item_ids, vocab.counts, first_seen), data_start=0, new_seconds=7 * day)
    # title 1 launched inside the data; title 2 within a week of its start (maybe earlier): never new
    assert launch[idx].tolist() == [NEVER, 10 * day, NEVER, 30 * day]
    assert (launch_times(vocab, 0, 0) == NEVER).all()


def test_batches_are_a_pure_function_of_seed_and_step():
    a = [batch_indices(s, 4, 10, seed=3) for s in range(5)]
    assert all(np.array_equal(x, batch_indices(s, 4, 10, seed=3)) for s, x in enumerate(a))
    # one epoch (10 windows) covers each window once
    first_epoch = np.concatenate(a)[:10]
    assert sorted(first_epoch.tolist()) == list(range(10))


def test_bucketed_batches_group_similar_lengths_and_cover_each_epoch():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 201, size=90)
    make = lambda seed: BucketedBatches(lengths, batch_size=8, seed=seed, shared_seed=0, pool=4)
    bb = make(1)
    epoch = [bb(s) for s in range(bb.per_epoch)]  # 12 batches: 96 slots for 90 windows
    flat = np.concatenate(epoch)
    assert set(flat.tolist()) == set(range(90)) and len(flat) == 96
    # a pure function of the step, in any call order (exact resume)
    again = make(1)
    assert all(np.array_equal(again(s), epoch[s]) for s in reversed(range(bb.per_epoch)))
    # padding to each batch's longest window costs far less than random batches do
    spread = lambda batches: np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    random = [batch_indices(s, 8, 90, seed=1) for s in range(bb.per_epoch)]
    assert spread(epoch) < 0.5 * spread(random)
    # the next epoch is a different draw; another rank (seed) with the shared seed gets batches of
    # about the same length at the same step
    assert not np.array_equal(np.concatenate([bb(s) for s in range(12, 24)]), flat)
    other = make(2)
    step_lengths = lambda b: [lengths[b(s)].max() for s in range(12)]
    assert np.corrcoef(step_lengths(bb), step_lengths(other))[0, 1] > 0.8
    # a rank with fewer windows keeps in step with the others when told their batches per epoch
    short = BucketedBatches(lengths[:70], batch_size=8, seed=3, shared_seed=0, pool=4, per_epoch=12)
    assert short.per_epoch == 12 and set(np.concatenate([short(s) for s in range(12)]).tolist()) == set(range(70))
    assert np.corrcoef(step_lengths(bb), [lengths[:70][short(s)].max() for s in range(12)])[0, 1] > 0.8


def test_task_names_are_sorted_event_types(seq_dir):
    assert task_names(read_split(seq_dir, "train")) == ("like", "play")
