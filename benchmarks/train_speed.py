"""Training speed of the reference's 3072 -> 4000 -> 10 network, SGD, batch size 64.

Measures in one process, interleaved round by round so that load changes on
the machine hit every method alike:

- the reference's eager GradientTape loop (with its loss/accuracy metrics);
- the ``train_part34`` step (``cifar_lab.training.gradient_step`` compiled by
  ``cifar_lab.compiled_step.TrainStep``, as train_part34 runs it, including the
  per-step ``float(loss)`` of the divergence check);
- Keras ``fit`` (steady state: the first step and fit's set-up are excluded);
- the "GEMM floor": the step's five matrix products alone, at the same shapes.

Diagnostic rows show the step compiled entirely with XLA or without XLA, fit
with XLA, and the SGD update alone. Usage::

    python benchmarks/train_speed.py [--steps 30] [--rounds 5]

Each method's best round is reported (as ``timeit`` does): on a shared machine
the other rounds measure the neighbours' load as much as the method. The
median is printed beside it.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import cifar_lab as lab
from cifar_lab.compiled_step import TrainStep
from cifar_lab.devices import resolve_device
from cifar_lab.models import classification_loss, compile_model, two_layer_sequential
from cifar_lab.training import gradient_step

INPUT_SHAPE, NUM_CLASSES, LEARNING_RATE = (32, 32, 3), 10, 1e-2
TARGETS = {"vs_eager": 1.25, "vs_fit": 1.0, "vs_floor": 1.3}


def new_model(hidden_size: int) -> keras.Model:
    return two_layer_sequential(INPUT_SHAPE, hidden_size, NUM_CLASSES, seed=0)


def eager_loop(hidden_size: int, batches: list) -> Callable[[], None]:
    """The reference notebook's loop, run eagerly."""
    model, optimizer = new_model(hidden_size), keras.optimizers.SGD(LEARNING_RATE)
    loss_fn = lab.classification_loss()
    train_loss = keras.metrics.Mean()
    train_accuracy = keras.metrics.SparseCategoricalAccuracy()

    def run() -> None:
        for x, y in batches:
            with tf.GradientTape() as tape:
                scores = model(x, training=True)
                loss = loss_fn(y, scores)
                gradients = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
                train_loss.update_state(loss)
                train_accuracy.update_state(y, scores)
        float(loss)

    return run


def part34_step(hidden_size: int, batches: list, jit_compile) -> Callable[[], None]:
    accuracy = keras.metrics.SparseCategoricalAccuracy()
    plain = functools.partial(gradient_step, loss_fn=classification_loss(), accuracy=accuracy)
    model, optimizer = new_model(hidden_size), keras.optimizers.SGD(LEARNING_RATE)
    step = TrainStep(plain, model, optimizer, jit_compile=jit_compile)

    def run() -> None:
        for x, y in batches:
            float(step(x, y))  # train_part34 reads every loss for its divergence check

    return run


class _SteadyTimer(keras.callbacks.Callback):
    """Time from the end of fit's first batch to the end of training."""

    def on_train_batch_end(self, batch, logs=None) -> None:
        if batch == 0:
            self.start = time.perf_counter()

    def on_train_end(self, logs=None) -> None:
        self.seconds = time.perf_counter() - self.start


def keras_fit(hidden_size: int, batches: list, jit_compile) -> Callable[[], float]:
    model = compile_model(
        new_model(hidden_size), keras.optimizers.SGD(LEARNING_RATE), jit_compile=jit_compile
    )
    X = np.concatenate([x for x, _ in batches])
    y = np.concatenate([labels for _, labels in batches])
    batch_size = len(batches[0][1])

    def run() -> float:
        timer = _SteadyTimer()
        model.fit(
            X, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[timer]
        )
        return timer.seconds / (len(batches) - 1)

    return run


def gemm_floor(hidden_size: int, batches: list, jit_compile: bool) -> Callable[[], None]:
    """The step's matrix products alone: forward x@W1, h@W2; backward dS@W2^T, h^T@dS, x^T@dH."""
    batch_size = len(batches[0][1])
    rng = np.random.default_rng(0)
    w1 = tf.Variable(rng.normal(size=(3072, hidden_size)).astype(np.float32))
    w2 = tf.Variable(rng.normal(size=(hidden_size, NUM_CLASSES)).astype(np.float32))
    d_scores = tf.constant(rng.normal(size=(batch_size, NUM_CLASSES)).astype(np.float32))
    d_hidden = tf.constant(rng.normal(size=(batch_size, hidden_size)).astype(np.float32))

    @tf.function(jit_compile=jit_compile)
    def products(x, d_scores, d_hidden):
        x = tf.reshape(x, (tf.shape(x)[0], -1))
        hidden = tf.matmul(x, w1)
        scores = tf.matmul(hidden, w2)
        back_hidden = tf.matmul(d_scores, w2, transpose_b=True)
        grad_w2 = tf.matmul(hidden, d_scores, transpose_a=True)
        grad_w1 = tf.matmul(x, d_hidden, transpose_a=True)
        return scores, back_hidden, grad_w2, grad_w1

    def run() -> None:
        for x, _ in batches:
            outputs = products(x, d_scores, d_hidden)
        outputs[0].numpy()

    return run


def update_alone(hidden_size: int, batches: list) -> Callable[[], None]:
    """The SGD update of the step's plan on CPU ("auto": XLA-fused), with fixed gradients."""
    model, optimizer = new_model(hidden_size), keras.optimizers.SGD(LEARNING_RATE)
    optimizer.build(model.trainable_variables)
    gradients = [tf.ones_like(v) * 1e-6 for v in model.trainable_variables]

    @tf.function(jit_compile=True)
    def apply():
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))

    def run() -> None:
        for _ in batches:
            apply()
        model.trainable_variables[0].numpy()

    return run


def build_methods(hidden_size: int, batches: list) -> dict[str, Callable]:
    return {
        "eager GradientTape loop (reference)": eager_loop(hidden_size, batches),
        "train_part34 step": part34_step(hidden_size, batches, "auto"),
        "Keras fit": keras_fit(hidden_size, batches, "auto"),
        "GEMM floor": gemm_floor(hidden_size, batches, jit_compile=False),
        "  step, whole step XLA": part34_step(hidden_size, batches, True),
        "  step, no XLA": part34_step(hidden_size, batches, False),
        "  fit, jit_compile=True": keras_fit(hidden_size, batches, True),
        "  GEMMs under XLA": gemm_floor(hidden_size, batches, jit_compile=True),
        "  SGD update alone (XLA)": update_alone(hidden_size, batches),
    }


def measure(methods: dict[str, Callable], num_steps: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per step of each method in each interleaved round (after a warm-up)."""
    for run in methods.values():
        run()  # trace, compile and build everything first
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, run in methods.items():
            start = time.perf_counter()
            per_step = run()  # fit reports its own steady-state time per step
            elapsed = (time.perf_counter() - start) / num_steps
            seconds[name].append(per_step if per_step is not None else elapsed)
    return seconds


def report(rounds: dict[str, list[float]], hidden_size: int) -> None:
    """Print each method's best round (its cost when left alone), its median, and the ratios."""
    per_step = {name: min(values) for name, values in rounds.items()}
    print(f"\n{'method':<40}{'ms/step':>10}{'steps/s':>10}{'median ms':>11}")
    for name, seconds in per_step.items():
        median = 1000 * statistics.median(rounds[name])
        print(f"{name:<40}{1000 * seconds:>10.1f}{1 / seconds:>10.1f}{median:>11.1f}")
    step = per_step["train_part34 step"]
    floor = min(per_step["GEMM floor"], per_step["  GEMMs under XLA"])
    ratios = {
        "vs_eager": (per_step["eager GradientTape loop (reference)"] / step, ">="),
        "vs_fit": (per_step["Keras fit"] / step, ">="),
        "vs_floor": (step / floor, "<="),
    }
    labels = {
        "vs_eager": "train_part34 step speed-up over the eager loop",
        "vs_fit": "train_part34 step speed-up over Keras fit",
        "vs_floor": "train_part34 step time / GEMM floor",
    }
    print()
    for key, (value, sense) in ratios.items():
        met = value >= TARGETS[key] if sense == ">=" else value <= TARGETS[key]
        verdict = "met" if met else "MISSED"
        print(f"{labels[key]:<48}{value:6.2f}x  (target {sense} {TARGETS[key]}x: {verdict})")
    update = per_step["  SGD update alone (XLA)"]
    megabytes = 3 * 4 * (3072 * hidden_size + hidden_size * NUM_CLASSES) / 1e6
    print(
        f"\nGEMM floor + SGD update = {1000 * (floor + update):.1f} ms "
        f"(step / that = {step / (floor + update):.2f}x). The update reads every weight and "
        f"its gradient and writes the weight back ({megabytes:.0f} MB per step, "
        f"{megabytes / 1000 / update:.1f} GB/s); the GEMM floor leaves that memory traffic out."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--hidden-size", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    splits = lab.load_cifar10(
        args.steps * args.batch_size, 0, 10, source="synthetic", verbose=False
    )
    X, y = splits.X_train, splits.y_train
    batches = [
        (X[i : i + args.batch_size], y[i : i + args.batch_size])
        for i in range(0, len(y), args.batch_size)
    ]
    device = resolve_device(None)
    print(
        f"{args.hidden_size}-unit two-layer net, batch {args.batch_size}, {args.steps} steps x "
        f"{args.rounds} rounds on {device} ({os.cpu_count()} CPUs), TF {tf.__version__}, "
        f"Keras {keras.__version__}"
    )
    with tf.device(device):
        rounds = measure(build_methods(args.hidden_size, batches), args.steps, args.rounds)
    report(rounds, args.hidden_size)


if __name__ == "__main__":
    main()
