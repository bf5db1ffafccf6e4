"""Part V: build the dense network (no convolutions) that an :class:`MLPConfig` describes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cifar_lab.data.formats import NUM_CLASSES
from cifar_lab.tuning.config import MLPConfig

if TYPE_CHECKING:  # TensorFlow loads only when a model is built
    import keras

    from cifar_lab.tuning.whitening import WhiteningFit


def build_mlp(config: MLPConfig, *, whitening: WhiteningFit | None = None) -> keras.Model:
    """Build the dense network a config describes (no convolution layers).

    Each hidden layer is Dense (without bias when batch norm comes before the
    activation: BN's shift replaces it), [BatchNorm], activation, [BatchNorm],
    [Dropout]. A maxout layer's Dense has ``units * maxout_pieces`` outputs.

    Args:
        config: the network to build.
        whitening: a fitted :class:`cifar_lab.tuning.whitening.WhiteningFit`, required
            exactly when ``config.whitening`` is not ``"none"``; it becomes a fixed layer.

    Returns:
        An uncompiled ``keras.Model``: float32 (N, 32, 32, 3) standardised
        images -> float32 logits (N, 10).
    """
    import keras

    from cifar_lab.tuning.layers import make_initializer, whitening_dense

    if not isinstance(config, MLPConfig):
        raise TypeError(f"config must be an MLPConfig, got {type(config).__name__}")
    if (config.whitening == "none") != (whitening is None):
        raise ValueError(
            f"config.whitening is {config.whitening!r} but whitening= is "
            f"{'missing' if whitening is None else 'given'}; fit one with "
            "cifar_lab.tuning.whitening.fit_whitening(X_train, ...) or set whitening='none'"
        )
    inputs = keras.Input(shape=(32, 32, 3), name="images")
    x = keras.layers.Flatten(name="flatten", dtype=config.precision)(inputs)
    if whitening is not None:
        x = whitening_dense(whitening, dtype=config.precision)(x)
    for index, units in enumerate(config.hidden_sizes):
        x = _hidden_block(x, units, config, index)
    outputs = keras.layers.Dense(
        NUM_CLASSES,
        kernel_initializer=make_initializer(config.initializer, _layer_seed(config, 99)),
        kernel_regularizer=_l2(config.l2),
        name="logits",
        dtype="float32",  # logits and the loss stay float32 under mixed precision
    )(x)
    return keras.Model(inputs, outputs, name=f"mlp_{config.architecture}")


def _hidden_block(x: keras.KerasTensor, units: int, config: MLPConfig, index: int):
    import keras

    from cifar_lab.tuning.layers import make_activation, make_initializer

    pieces = config.maxout_pieces if config.activation == "maxout" else 1
    dtype = config.precision
    x = keras.layers.Dense(
        units * pieces,
        use_bias=config.batch_norm != "before",
        kernel_initializer=make_initializer(config.initializer, _layer_seed(config, index)),
        kernel_regularizer=_l2(config.l2),
        name=f"dense_{index}",
        dtype=dtype,
    )(x)
    if config.batch_norm == "before":
        x = keras.layers.BatchNormalization(name=f"batch_norm_{index}", dtype=dtype)(x)
    name = f"{config.activation}_{index}"
    x = make_activation(config.activation, pieces=pieces, name=name, dtype=dtype)(x)
    if config.batch_norm == "after":
        x = keras.layers.BatchNormalization(name=f"batch_norm_{index}", dtype=dtype)(x)
    if config.dropout > 0:
        seed = _layer_seed(config, 100 + index)
        name = f"dropout_{index}"
        x = keras.layers.Dropout(config.dropout, seed=seed, name=name, dtype=dtype)(x)
    return x


def _layer_seed(config: MLPConfig, index: int) -> int:
    return config.seed * 1000 + index  # distinct per layer, reproducible per config


def _l2(strength: float) -> keras.regularizers.Regularizer | None:
    import keras

    return keras.regularizers.L2(strength) if strength > 0 else None
