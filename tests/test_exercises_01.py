"""Notebook 01: every exercise's check catches plausible wrong answers; every stub stops it.

The notebook runs once per session, in the quick profile, in one kernel
(:mod:`executed_notebooks`); :func:`notebook_harness.run_with_mutations` then
returns to each exercise in that kernel. At each exercise the released
stub must make the following check cell raise ``NotImplementedError`` naming
the exercise; each wrong answer below must make the check fail; the real
solution must pass it.
"""

from __future__ import annotations

from conftest import REPO_ROOT
from notebook_harness import Mutation, assert_checks_catch

NOTEBOOK = REPO_ROOT / "notebooks" / "01_preparation.ipynb"

STATISTICS = (
    "    mean = X_train.mean(axis=(0, 1, 2), dtype=np.float64)  # (3,): one value per channel\n"
    "    std = X_train.std(axis=(0, 1, 2), dtype=np.float64)  # (3,)\n"
)
APPLY = "(X.astype(np.float32) - mean) / std for X in (X_train, X_val, X_test)"
SHUFFLE = "order = self.rng.permutation(N)  # a new order in every epoch"
BATCH = "yield self.X[batch], self.y[batch]"
LOOP = (
    "for start in range(0, N, self.batch_size):\n"
    "            batch = order[start : start + self.batch_size]\n"
    "            yield self.X[batch], self.y[batch]"
)

STANDARDISE_SPLITS = [
    Mutation(
        "statistics over train+val+test",
        STATISTICS,
        "    pooled = np.concatenate([X_train, X_val, X_test])\n"
        "    mean = pooled.mean(axis=(0, 1, 2), dtype=np.float64)\n"
        "    std = pooled.std(axis=(0, 1, 2), dtype=np.float64)\n",
    ),
    Mutation(
        "per-pixel statistics",
        STATISTICS,
        "    mean = X_train.mean(axis=0, dtype=np.float64)\n"
        "    std = X_train.std(axis=0, dtype=np.float64)\n",
    ),
    Mutation(
        "one std for all channels",
        "std = X_train.std(axis=(0, 1, 2), dtype=np.float64)",
        "std = X_train.std(dtype=np.float64)",
    ),
    Mutation(
        "no division by std",
        APPLY,
        "X.astype(np.float32) - mean for X in (X_train, X_val, X_test)",
    ),
    Mutation(
        "float64 results",
        "    mean, std = mean.astype(np.float32), std.astype(np.float32)\n",
        "",
    ),
    Mutation(
        "validation and test standardised with their own statistics",
        APPLY,
        "((X - X.mean(axis=(0, 1, 2))) / X.std(axis=(0, 1, 2))).astype(np.float32)"
        " for X in (X_train, X_val, X_test)",
    ),
    Mutation(
        "float32 sums",
        "mean = X_train.mean(axis=(0, 1, 2), dtype=np.float64)",
        "mean = X_train.astype(np.float32).mean(axis=(0, 1, 2))",
    ),
]

MINIBATCHES = [
    Mutation(
        "shuffled positions never used (the reference's bug)",
        BATCH,
        "yield self.X[start : start + self.batch_size], self.y[start : start + self.batch_size]",
    ),
    Mutation(
        "last partial batch dropped",
        "for start in range(0, N, self.batch_size):",
        "for start in range(0, N - self.batch_size + 1, self.batch_size):",
    ),
    Mutation(
        "x and y shuffled with different permutations",
        LOOP,
        "y_order = self.rng.permutation(N) if self.shuffle else order\n"
        "        for start in range(0, N, self.batch_size):\n"
        "            batch = order[start : start + self.batch_size]\n"
        "            yield self.X[batch], self.y[y_order[start : start + self.batch_size]]",
    ),
    Mutation(
        "sampling with replacement",
        SHUFFLE,
        "order = self.rng.integers(0, N, size=N)",
    ),
    Mutation(
        "same order every epoch",
        SHUFFLE,
        "order = np.random.default_rng(0).permutation(N)",
    ),
    Mutation(
        "unseeded global generator",
        SHUFFLE,
        "order = np.random.permutation(N)",
    ),
    Mutation("shuffle flag ignored", "if self.shuffle:", "if True:"),
]

MUTATIONS = STANDARDISE_SPLITS + MINIBATCHES


def test_wrong_answers_fail_their_checks_and_stubs_stop(executed_notebooks):
    assert_checks_catch(executed_notebooks[NOTEBOOK.stem], MUTATIONS)
