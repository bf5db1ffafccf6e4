"""Cold (decode) vs warm (cache) load time and peak RSS of ``load_cifar10``.

Each load runs in a fresh subprocess so peak RSS is measured per load and the
two are compared side by side in one run:

    python benchmarks/load_data.py [--source PATH]

The source defaults to $CIFAR10_SOURCE, else ../shared/data/cifar10-jpeg.tgz.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
import cifar_lab as lab
start = time.perf_counter()
splits = lab.load_cifar10(num_test=None, source=sys.argv[1], cache_dir=sys.argv[2], verbose=False)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "train": len(splits.y_train),
                  "val": len(splits.y_val), "test": len(splits.y_test),
                  "tensorflow_imported": "tensorflow" in sys.modules}))
"""


def _load_once(source: str, cache_dir: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, source, cache_dir],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    default = os.environ.get("CIFAR10_SOURCE") or str(
        Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tgz"
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=default)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = _load_once(args.source, cache_dir)
        warm = _load_once(args.source, cache_dir)
    print(f"source: {args.source}")
    print(f"splits: {cold['train']} train / {cold['val']} val / {cold['test']} test")
    print(f"{'load':<6}{'seconds':>10}{'peak RSS MB':>14}")
    for name, row in (("cold", cold), ("warm", warm)):
        print(f"{name:<6}{row['seconds']:>10.1f}{row['peak_mb']:>14.0f}")
    print(f"warm/cold time ratio: {warm['seconds'] / cold['seconds']:.2f}")
    print(f"peak RSS vs 1.5 GB budget: {max(cold['peak_mb'], warm['peak_mb']) / 1536:.2f}")
    print(f"TensorFlow imported during load: {cold['tensorflow_imported']}")


if __name__ == "__main__":
    main()
