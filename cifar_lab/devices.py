"""Choose where TensorFlow runs: the GPU when one is visible, else the CPU.

This replaces the reference notebook's ``USE_GPU`` global: every training
function takes ``device=`` and passes it through :func:`resolve_device`.
"""

from __future__ import annotations

import os
import re

_DEVICE_PATTERN = re.compile(r"^/?(?:device:)?(cpu|gpu)(?::(\d+))?$", re.IGNORECASE)


def visible_devices(device_type: str) -> list[str]:
    """Names of the visible physical devices of one type.

    Args:
        device_type: ``"CPU"`` or ``"GPU"``.

    Returns:
        Names such as ``["/physical_device:GPU:0"]``; empty when there is none.
    """
    import tensorflow as tf  # late import: data-only work should not pay for TensorFlow

    return [device.name for device in tf.config.list_physical_devices(device_type)]


def default_device() -> str:
    """Return ``"/GPU:0"`` when a GPU is visible, otherwise ``"/CPU:0"``."""
    return "/GPU:0" if visible_devices("GPU") else "/CPU:0"


def resolve_device(device: str | None) -> str:
    """Turn a device argument into a TensorFlow device string, checking it exists.

    Args:
        device: None (the default device), or ``"cpu"``, ``"gpu"``, ``"/CPU:0"``,
            ``"/GPU:1"``, ``"/device:GPU:0"`` (case-insensitive).

    Returns:
        A canonical name such as ``"/CPU:0"`` or ``"/GPU:0"`` for ``tf.device``.

    Raises:
        TypeError: device is not a string or None.
        ValueError: the name is malformed or names a device that is not visible.
    """
    if device is None:
        return default_device()
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as '/CPU:0' or None, got {device!r}")
    match = _DEVICE_PATTERN.match(device.strip())
    if match is None:
        raise ValueError(
            f"device {device!r} is not understood; use '/CPU:0', '/GPU:0' (or 'cpu', 'gpu'), "
            "or None for the default"
        )
    device_type, index = match.group(1).upper(), int(match.group(2) or 0)
    found = visible_devices(device_type)
    if index >= len(found):
        raise ValueError(
            f"device {device!r} asked for {device_type}:{index}, but {len(found)} "
            f"{device_type}(s) are visible; pass device=None to use the default "
            f"({default_device()})"
        )
    return f"/{device_type}:{index}"


def is_gpu(device: str) -> bool:
    """Whether a device name from :func:`resolve_device` is a GPU."""
    return device.upper().startswith("/GPU")


def cpu_has_fast_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX or AVX-512 BF16).

    Args:
        cpuinfo: text of ``/proc/cpuinfo`` (read when None; False where it is missing,
            e.g. on macOS or Windows).

    Returns:
        True when the ``amx_bf16`` or ``avx512_bf16`` flag is present.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                cpuinfo = handle.read()
        except OSError:
            return False
    return re.search(r"\b(amx_bf16|avx512_bf16)\b", cpuinfo) is not None


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the OS tells, else all)."""
    if hasattr(os, "sched_getaffinity"):  # Linux: a container or taskset may allow fewer
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
