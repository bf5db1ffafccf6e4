"""Training throughput of the recipe network in float32 and mixed_bfloat16, side by side.

    python benchmarks/precision_speed.py [--rounds 3]

Builds the reference recipe's 2048-1024-512 network (batch norm, dropout; no
whitening, so only the trained layers count) in three set-ups and times
``model.fit`` on random data in interleaved rounds, so a noisy neighbour slows
every set-up alike. Prints images/s per set-up (best round) and the ratios to
float32 at batch 256, the old recipe's setting. bfloat16 is fast only where
the CPU has AMX / AVX-512 BF16 (``cifar_lab.devices.cpu_has_fast_bfloat16``).

Measured 2026-11-27 on the shared 2-core CPU (AMX present), TF 2.21, 3 rounds:
float32 at 256: 2,121 images/s; float32 at 1024: 3,264 (1.54x); mixed_bfloat16
at 1024: 4,707 (2.22x, and 1.44x over float32 at the same batch).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cifar_lab.devices import cpu_has_fast_bfloat16
from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.network import build_mlp
from cifar_lab.tuning.optimizers import compile_mlp
from cifar_lab.tuning.train import one_hot

IMAGES = 8192  # per timed epoch: 32 steps at batch 256, 8 at batch 1024
NETWORK = MLPConfig(hidden_sizes=(2048, 1024, 512), batch_norm="before", dropout=0.1)
SETUPS = {
    "float32, batch 256": NETWORK.replace(batch_size=256),
    "float32, batch 1024": NETWORK.replace(batch_size=1024),
    "mixed_bfloat16, batch 1024": NETWORK.replace(batch_size=1024, precision="mixed_bfloat16"),
}


def timed_epoch(model, config: MLPConfig, X: np.ndarray, Y: np.ndarray) -> float:
    """Images per second of one ``fit`` epoch over X."""
    start = time.perf_counter()
    model.fit(X, Y, batch_size=config.batch_size, epochs=1, verbose=0, shuffle=False)
    return len(X) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(IMAGES, 32, 32, 3)).astype(np.float32)
    Y = one_hot(rng.integers(0, 10, IMAGES))
    models = {}
    for name, config in SETUPS.items():  # build and trace every set-up before timing
        models[name] = compile_mlp(build_mlp(config), config, IMAGES // config.batch_size)
        models[name].fit(X[:2048], Y[:2048], batch_size=config.batch_size, verbose=0)
    speeds: dict[str, list[float]] = {name: [] for name in SETUPS}
    for round_index in range(args.rounds):
        for name, config in SETUPS.items():
            speeds[name].append(timed_epoch(models[name], config, X, Y))
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)
    print(f"CPU has fast bfloat16 (AMX / AVX-512 BF16): {cpu_has_fast_bfloat16()}")
    base = max(speeds["float32, batch 256"])
    for name, values in speeds.items():
        best = max(values)
        print(f"{name:>28}: {best:7.0f} images/s  ratio to float32@256 {best / base:4.2f}x")


if __name__ == "__main__":
    main()
