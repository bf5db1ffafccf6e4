"""The data layer's one error type for a source that exists but cannot be read."""

from __future__ import annotations


class CorruptSourceError(ValueError):
    """A CIFAR-10 source exists but cannot be read (truncated, corrupt or unsafe)."""
