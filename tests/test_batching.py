"""Tests for the minibatch iterator and seeding."""

from __future__ import annotations

import numpy as np
import pytest

import cifar_lab as lab


def _data(n=103):
    X = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return X, np.arange(n, dtype=np.int32)


def test_unshuffled_batches_cover_data_in_order_and_keep_last_partial():
    X, y = _data()
    dset = lab.Dataset(X, y, batch_size=10)
    batches = list(dset)
    assert len(dset) == len(batches) == 11
    assert [len(b[1]) for b in batches] == [10] * 10 + [3]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)  # pairs stay aligned


def test_shuffle_permutes_covers_every_index_once_and_changes_per_epoch():
    X, y = _data()
    dset = lab.Dataset(X, y, batch_size=16, shuffle=True, seed=0)
    epochs = [np.concatenate([yb for _, yb in dset]) for _ in range(3)]
    for order in epochs:
        assert sorted(order.tolist()) == y.tolist()
        assert not np.array_equal(order, y)
    assert not np.array_equal(epochs[0], epochs[1])
    for xb, yb in dset:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)


def test_same_seed_same_sequence_of_epochs():
    X, y = _data()

    def run(seed):
        dset = lab.Dataset(X, y, batch_size=16, shuffle=True, seed=seed)
        return [np.concatenate([yb for _, yb in dset]) for _ in range(2)]

    for a, b in zip(run(5), run(5), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(run(5)[0], run(6)[0])
    gen_a = run(np.random.default_rng(3))
    gen_b = run(np.random.default_rng(3))
    np.testing.assert_array_equal(gen_a[1], gen_b[1])


def test_drop_remainder_leaves_out_the_partial_batch_and_other_examples_each_epoch():
    X, y = _data()  # 103 = 6 x 16 + 7
    kept = lab.Dataset(X, y, batch_size=16, shuffle=True, seed=0)
    dropped = lab.Dataset(X, y, batch_size=16, shuffle=True, seed=0, drop_remainder=True)
    assert len(kept) == 7 and len(dropped) == 6
    epochs = [[yb for _, yb in dropped] for _ in range(2)]
    for batches in epochs:
        assert [len(yb) for yb in batches] == [16] * 6
        seen = np.concatenate(batches)
        assert len(set(seen.tolist())) == 96  # each example at most once
    first, second = (set(np.concatenate(b).tolist()) for b in epochs)
    assert first != second  # a new shuffle leaves out other examples
    in_order = lab.Dataset(X, y, batch_size=10, drop_remainder=True)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in in_order]), y[:100])
    assert "drop_remainder=True" in repr(in_order)
    with pytest.raises(ValueError, match="no batch"):
        lab.Dataset(X[:5], y[:5], batch_size=10, drop_remainder=True)
    with pytest.raises(TypeError, match="drop_remainder"):
        lab.Dataset(X, y, batch_size=10, drop_remainder="yes")


@pytest.mark.parametrize("batch_size", [0, -4])
def test_non_positive_batch_size_raises(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        lab.Dataset(*_data(), batch_size=batch_size)


def test_bad_arguments_raise_clear_errors():
    X, y = _data()
    with pytest.raises(ValueError, match=r"same first dimension.*\(103, 2\).*\(102,\)"):
        lab.Dataset(X, y[:-1], batch_size=4)
    with pytest.raises(TypeError, match="batch_size"):
        lab.Dataset(X, y, batch_size=2.5)
    with pytest.raises(TypeError, match="seed"):
        lab.Dataset(X, y, batch_size=4, shuffle=True, seed="abc")


def test_set_seed_makes_tensorflow_and_numpy_repeatable():
    import tensorflow as tf

    lab.set_seed(3)
    a = (np.random.rand(3), tf.random.normal((3,)).numpy())
    lab.set_seed(3)
    b = (np.random.rand(3), tf.random.normal((3,)).numpy())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed must be >= 0"):
        lab.set_seed(-1)
