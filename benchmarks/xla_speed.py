"""Train-step speed of dense networks with and without XLA (``jit_compile``) on this machine.

    python benchmarks/xla_speed.py

Measured with TF 2.21 on the shared 2-core CPU (steps/s at batch 256, random data):
2048-1024-512 with batch norm: ~9-10 without XLA, ~2.3 with XLA; 100 units: ~84
without, ~75-82 with. Hence ``MLPConfig.jit_compile`` defaults to False.
"""

from __future__ import annotations

import time

import numpy as np

from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.network import build_mlp
from cifar_lab.tuning.optimizers import compile_mlp
from cifar_lab.tuning.train import one_hot

STEPS = 12
BATCH = 256


def steps_per_second(config: MLPConfig, X: np.ndarray, Y: np.ndarray) -> float:
    """Median speed of two timed epochs of ``STEPS`` steps, after a warm-up."""
    model = compile_mlp(build_mlp(config), config, STEPS)
    model.fit(X[: 2 * BATCH], Y[: 2 * BATCH], batch_size=BATCH, epochs=1, verbose=0)
    speeds = []
    for _ in range(2):
        start = time.perf_counter()
        model.fit(X, Y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
        speeds.append(STEPS / (time.perf_counter() - start))
    return float(np.median(speeds))


def main() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(BATCH * STEPS, 32, 32, 3)).astype(np.float32)
    Y = one_hot(rng.integers(0, 10, len(X)))
    wide = MLPConfig(hidden_sizes=(2048, 1024, 512), batch_norm="before", dropout=0.3)
    small = MLPConfig(hidden_sizes=(100,))
    for name, config in (("2048-1024-512 BN", wide), ("100", small)):
        for jit in (False, True):
            speed = steps_per_second(config.replace(jit_compile=jit), X, Y)
            print(f"{name:>18}  jit_compile={jit!s:<5}  {speed:6.2f} steps/s", flush=True)


if __name__ == "__main__":
    main()
