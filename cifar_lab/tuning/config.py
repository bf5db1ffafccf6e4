"""Part V: one frozen :class:`MLPConfig` names every choice of a dense network.

Free of TensorFlow, so configs, recipes and the command line load in
milliseconds. :func:`cifar_lab.tuning.network.build_mlp` turns a config into
a Keras model, :mod:`cifar_lab.tuning.optimizers` compiles it and
:func:`cifar_lab.tuning.train.train_config` trains it.

Example::

    from cifar_lab.tuning.config import MLPConfig
    from cifar_lab.tuning.network import build_mlp

    config = MLPConfig(hidden_sizes=(512, 256), activation="gelu", batch_norm="before")
    model = build_mlp(config)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cifar_lab.checks import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_optional_int,
)

ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "tanh", "maxout")
INITIALIZERS = (
    "uniform", "normal", "lecun_uniform", "lecun_normal", "glorot_uniform", "glorot_normal",
    "he_uniform", "he_normal", "zeros",
)  # fmt: skip
BATCH_NORM_PLACES = ("none", "before", "after")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "cosine")
WHITENINGS = ("none", "pca", "zca")
PRECISIONS = ("float32", "mixed_bfloat16")
LEAKY_SLOPE = 0.1  # slope of leaky_relu for negative inputs

_CHOICES = {
    "activation": ACTIVATIONS,
    "initializer": INITIALIZERS,
    "batch_norm": BATCH_NORM_PLACES,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "whitening": WHITENINGS,
    "precision": PRECISIONS,
}
# int field -> (lowest allowed, highest allowed or None)
_INT_RANGES = {
    "maxout_pieces": (2, None),
    "translate": (0, 31),
    "epochs": (1, None),
    "batch_size": (1, None),
    "seed": (0, None),
}
# number field -> (lowest allowed, highest allowed or None, whether the lowest is allowed)
_NUMBER_RANGES = {
    "dropout": (0.0, 0.99, True),  # Keras needs a rate below 1
    "l2": (0.0, None, True),
    "learning_rate": (0.0, None, False),
    "momentum": (0.0, 1.0, True),
    "weight_decay": (0.0, None, True),
    "warmup_epochs": (0.0, None, True),
    "label_smoothing": (0.0, 1.0, True),
    "noise_std": (0.0, None, True),
    "whitening_epsilon": (0.0, None, False),
}
_OPTIONAL_COUNTS = ("num_train", "whitening_components")  # None, or an int >= 1
_FLAGS = ("flip", "augment_whitened", "jit_compile")


@dataclass(frozen=True)
class MLPConfig:
    """Every choice of a dense CIFAR-10 network and how it is trained.

    Attributes:
        hidden_sizes: units of each hidden layer, any depth (``()`` = softmax
            regression); a string such as ``"512-256"`` is accepted too.
        activation: one of :data:`ACTIVATIONS`; ``"maxout"`` is a dense layer
            with ``maxout_pieces`` pieces per unit followed by a max.
        maxout_pieces: linear pieces per maxout unit.
        initializer: kernel initialiser of every dense layer, one of :data:`INITIALIZERS`.
        batch_norm: ``"none"``, or batch norm ``"before"`` / ``"after"`` the activation.
        dropout: dropout rate after each hidden layer.
        l2: L2 penalty on every kernel (added to the loss).
        optimizer: one of :data:`OPTIMIZERS` (``"momentum"``/``"nesterov"`` are SGD variants).
        learning_rate: peak learning rate.
        momentum: momentum of the SGD variants.
        weight_decay: decoupled weight decay (AdamW's; any optimiser accepts it).
        schedule: ``"constant"`` or ``"cosine"`` (decay to 0 over the run).
        warmup_epochs: linear warm-up from 0 to ``learning_rate`` (may be fractional).
        label_smoothing: cross-entropy label smoothing.
        flip, translate, noise_std: augmentation, see
            :func:`cifar_lab.tuning.augment.augment_batch`.
        whitening: ``"none"``, ``"pca"`` or ``"zca"``, fitted on the training subset.
        whitening_components: PCA output size (None = all 3072).
        whitening_epsilon: whitening regulariser, relative to the mean eigenvalue.
        augment_whitened: with ZCA whitening, whiten the training images once and
            flip and shift the whitened images. ZCA keeps the pixel layout and nearly
            commutes with flips and shifts (it differs near the border), so the fixed
            3072x3072 layer runs once per image instead of in every step (about a
            quarter of a 2048-1024-512 step's work); the trained model still takes
            standardised images, with the whitening as its first layer.
        epochs, batch_size: the training budget.
        num_train: training images used (None = all given).
        seed: seeds initialisers, dropout, shuffling and augmentation.
        precision: ``"float32"``, or ``"mixed_bfloat16"``: matmuls in bfloat16 with
            float32 weights, batch-norm statistics and logits. About 2x faster on CPUs
            with AMX / AVX-512 BF16 (see :func:`cifar_lab.devices.cpu_has_fast_bfloat16`),
            much slower on CPUs without them.
        jit_compile: XLA-compile the train step. Off by default: with TF 2.21 on the
            2-core CPU, XLA ran a 2048-1024-512 step ~4x slower than oneDNN (2.3 vs
            ~9 steps/s at batch 256) and a 100-unit one no faster (benchmarks/xla_speed.py).
    """

    hidden_sizes: tuple[int, ...] = (512,)
    activation: str = "relu"
    maxout_pieces: int = 2
    initializer: str = "he_normal"
    batch_norm: str = "none"
    dropout: float = 0.0
    l2: float = 0.0
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    flip: bool = False
    translate: int = 0
    noise_std: float = 0.0
    whitening: str = "none"
    whitening_components: int | None = None
    whitening_epsilon: float = 0.1
    augment_whitened: bool = False
    epochs: int = 10
    batch_size: int = 256
    num_train: int | None = None
    seed: int = 0
    precision: str = "float32"
    jit_compile: bool = False

    def __post_init__(self) -> None:
        checked: dict[str, Any] = {"hidden_sizes": parse_hidden_sizes(self.hidden_sizes)}
        for name, choices in _CHOICES.items():
            check_choice(name, getattr(self, name), choices)
        for name, (low, high) in _INT_RANGES.items():
            checked[name] = check_int(name, getattr(self, name), minimum=low, maximum=high)
        for name, (low, high, low_ok) in _NUMBER_RANGES.items():
            checked[name] = check_number(
                name, getattr(self, name), minimum=low, maximum=high, minimum_inclusive=low_ok
            )
        for name in _FLAGS:
            checked[name] = check_bool(name, getattr(self, name))
        for name in _OPTIONAL_COUNTS:
            checked[name] = check_optional_int(name, getattr(self, name), minimum=1)
        for name, value in checked.items():  # plain Python values: JSON-ready, equal when equal
            object.__setattr__(self, name, value)
        if self.whitening_components is not None and self.whitening != "pca":
            raise ValueError("whitening_components needs whitening='pca'; set it to None")
        if self.augment_whitened and self.whitening != "zca":
            raise ValueError(
                f"augment_whitened needs whitening='zca' (PCA output is not an image); "
                f"got whitening={self.whitening!r}: set augment_whitened=False"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-ready values (hidden_sizes as a list)."""
        values = dataclasses.asdict(self)
        values["hidden_sizes"] = list(self.hidden_sizes)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MLPConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MLPConfig fields {unknown}; valid fields: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> MLPConfig:
        """Return a copy with some fields changed (validated like a new config)."""
        return self.from_dict({**self.to_dict(), **changes})

    @property
    def architecture(self) -> str:
        """Hidden sizes as text, e.g. ``"512-256"`` (``"none"`` for no hidden layer)."""
        return "-".join(str(units) for units in self.hidden_sizes) or "none"


def parse_hidden_sizes(value: Any) -> tuple[int, ...]:
    """Turn ``(512, 256)``, ``[512, 256]``, ``"512-256"`` or ``"none"`` into a tuple of ints."""
    if isinstance(value, str):
        text = value.strip().lower()
        parts = [] if text in ("", "none") else text.replace("x", "-").split("-")
        try:
            value = tuple(int(part) for part in parts)
        except ValueError:
            raise ValueError(f"hidden_sizes {value!r} is not like '512-256'") from None
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"hidden_sizes must be a tuple of ints or '512-256', got {value!r}")
    return tuple(
        check_int(f"hidden_sizes[{index}]", units, minimum=1) for index, units in enumerate(value)
    )
