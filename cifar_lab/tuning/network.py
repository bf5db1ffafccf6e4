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

    Each hidden block is the row of ``_BLOCKS`` for ``config.batch_norm``: Dense
    (without bias when batch norm comes before the activation: BN's shift
    replaces it), [BatchNorm], activation, [BatchNorm], [Dropout]. A maxout
    layer's Dense has ``units * maxout_pieces`` outputs.

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


# The layers of one hidden block, in order, for each batch-norm placement: the block is
# read from this table rather than branched on, so a placement is one row to change.
_BLOCKS = {
    "none": ("dense", "activation", "dropout"),
    "before": ("dense", "batch_norm", "activation", "dropout"),
    "after": ("dense", "activation", "batch_norm", "dropout"),
}


def _hidden_block(x: keras.KerasTensor, units: int, config: MLPConfig, index: int):
    for kind in _BLOCKS[config.batch_norm]:
        layer = _block_layer(kind, units, config, index)
        x = x if layer is None else layer(x)
    return x


def _block_layer(kind: str, units: int, config: MLPConfig, index: int):
    """Layer ``kind`` of hidden block ``index``, or None when the config leaves it out."""
    import keras

    from cifar_lab.tuning.layers import make_activation, make_initializer

    dtype = config.precision
    maxout = config.activation == "maxout"
    if kind == "dense":  # maxout takes the max of maxout_pieces outputs per unit
        affine = keras.layers.Dense(
            units * config.maxout_pieces if maxout else units,
            use_bias=config.batch_norm != "before",  # batch norm's beta is the shift
            kernel_initializer=make_initializer(config.initializer, _layer_seed(config, index)),
            kernel_regularizer=_l2(config.l2),
            name=f"dense_{index}",
            dtype=dtype,
        )
        return affine
    if kind == "batch_norm":
        return keras.layers.BatchNormalization(name=f"batch_norm_{index}", dtype=dtype)
    if kind == "activation":
        name = f"{config.activation}_{index}"
        return make_activation(
            config.activation, pieces=config.maxout_pieces, name=name, dtype=dtype
        )
    if not config.dropout:  # kind == "dropout"
        return None
    seed, name = _layer_seed(config, 100 + index), f"dropout_{index}"
    return keras.layers.Dropout(config.dropout, seed=seed, name=name, dtype=dtype)


def _layer_seed(config: MLPConfig, index: int) -> int:
    return config.seed * 1000 + index  # distinct per layer, reproducible per config


def _l2(strength: float) -> keras.regularizers.Regularizer | None:
    import keras

    return keras.regularizers.L2(strength) if strength > 0 else None
