"""Layers for the Part V dense networks: maxout, whitening, raw-pixel input, factories.

Every model these build is made of built-in Keras layers only: whitening and
raw-pixel standardisation keep their numbers as weights, maxout is a reshape
and a max, the flip of test-time augmentation is crops and a concatenation.
So a saved ``.keras`` model reloads with plain
``keras.models.load_model(path, safe_mode=True)``, without ``cifar_lab``.
:class:`LegacyMaxout` and :class:`LegacyHorizontalFlip` stay registered only
so that models saved by older versions of the library still load.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from cifar_lab.checks import check_choice, check_int
from cifar_lab.tuning.config import ACTIVATIONS, INITIALIZERS, LEAKY_SLOPE
from cifar_lab.tuning.whitening import WhiteningFit

_PACKAGE = "cifar_lab"


class Maxout:
    """Build a maxout activation from built-in Keras layers: max over groups of ``pieces``.

    Put it after a ``Dense(units * pieces)`` layer to get a maxout unit: output
    unit ``j`` is the largest of input features ``j*pieces .. j*pieces+pieces-1``.
    Calling it adds a ``Reshape((units, pieces))`` and a
    ``GlobalMaxPooling1D(data_format="channels_first")`` (the max over the last
    axis, named ``name``), so a saved model needs no custom class to reload.
    Neither layer has weights; each call adds new ones, like calling a new layer.

    Args:
        pieces: linear pieces per unit, at least 2.
        name: name of the max layer (the reshape is ``name + "_pieces"``); None
            lets Keras choose.
        dtype: Keras dtype policy of both layers, e.g. ``"mixed_bfloat16"``; None
            for Keras' default.

    Input: float (N, units * pieces). Output: float (N, units).
    """

    def __init__(self, pieces: int, *, name: str | None = None, dtype: str | None = None) -> None:
        self.pieces = check_int("pieces", pieces, minimum=2)
        self.name = name
        self.dtype = dtype

    def __call__(self, inputs):
        """Apply the max to ``inputs`` (a Keras tensor, or an array for an eager result)."""
        shape = tuple(inputs.shape)
        if len(shape) != 2 or shape[-1] is None or shape[-1] % self.pieces:
            raise ValueError(
                f"Maxout with pieces={self.pieces} needs input (N, F) with F divisible by "
                f"{self.pieces}; got shape {shape}. Use Dense(units * pieces) before it."
            )
        units = shape[-1] // self.pieces
        groups_name = None if self.name is None else f"{self.name}_pieces"
        grouped = keras.layers.Reshape((units, self.pieces), name=groups_name, dtype=self.dtype)
        # channels_first: (N, units, pieces) is (batch, channels, steps), pooled over pieces
        largest = keras.layers.GlobalMaxPooling1D(
            data_format="channels_first", name=self.name, dtype=self.dtype
        )
        return largest(grouped(inputs))


def mirror_model(
    height: int = 32, width: int = 32, channels: int = 3, *, name: str = "mirror"
) -> keras.Model:
    """A model of built-in layers that mirrors images left to right, always and exactly.

    Each column is cut out by a ``Cropping2D`` and the columns are concatenated
    in reverse order: only copies, no arithmetic, so the result is bit-exact on
    every device and precision (a mirror as a fixed 0/1 matrix product would be
    rounded by TensorFloat-32 or bfloat16 matmuls), and the model has no weights.

    Args:
        height, width, channels: image shape.
        name: model name.

    Returns:
        A ``keras.Model``: float32 (N, height, width, channels) ->
        float32 (N, height, width, channels), ``output == input[:, :, ::-1, :]``.
    """
    inputs = keras.Input(shape=(height, width, channels), name=f"{name}_input")
    columns = [
        keras.layers.Cropping2D(
            ((0, 0), (column, width - 1 - column)),
            data_format="channels_last",
            name=f"{name}_column_{column}",
            dtype="float32",
        )(inputs)
        for column in reversed(range(width))
    ]
    concatenate = keras.layers.Concatenate(axis=2, name=f"{name}_columns", dtype="float32")
    return keras.Model(inputs, concatenate(columns), name=name)


# Models saved before the library built maxout and the mirror from built-in layers
# name these two classes (cifar_lab>Maxout, cifar_lab>HorizontalFlip); they stay
# registered, under their old names, only so that such models still load (the
# instructor's loader allows the library's registered classes). New models never use them.
@keras.saving.register_keras_serializable(package=_PACKAGE, name="Maxout")
class LegacyMaxout(keras.layers.Layer):
    """Max over groups of ``pieces`` consecutive features (old saved models only).

    Args:
        pieces: linear pieces per unit, at least 2.
        **kwargs: the standard Keras layer arguments (``name``, ``dtype``), as a
            saved config holds them; Keras rejects unknown ones.

    Input: float (N, units * pieces). Output: float (N, units).
    """

    def __init__(self, pieces: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pieces = check_int("pieces", pieces, minimum=2)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple:
        features = input_shape[-1]
        return (*input_shape[:-1], None if features is None else features // self.pieces)

    def build(self, input_shape: Sequence[int | None]) -> None:
        features = input_shape[-1]
        if features is None or features % self.pieces:
            raise ValueError(
                f"Maxout with pieces={self.pieces} needs a feature count divisible by "
                f"{self.pieces}; got {features}."
            )

    def call(self, inputs):
        ops = keras.ops
        units = inputs.shape[-1] // self.pieces
        grouped = ops.reshape(inputs, (-1, units, self.pieces))
        return ops.max(grouped, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "pieces": self.pieces}


@keras.saving.register_keras_serializable(package=_PACKAGE, name="HorizontalFlip")
class LegacyHorizontalFlip(keras.layers.Layer):
    """Mirror images left to right, always (old saved models only; see :func:`mirror_model`).

    Input: (N, H, W, C). Output: the same shape and dtype, columns reversed.
    """

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=-2)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple:
        return tuple(input_shape)


def whitening_dense(
    fit: WhiteningFit, name: str = "whitening", dtype: str = "float32"
) -> keras.layers.Dense:
    """A frozen, built-in ``Dense`` layer computing ``(x - mean) @ matrix``.

    ``x @ W - mean @ W`` is the same affine map with a plain kernel and bias, so a
    saved model needs no custom class to reload.

    Args:
        fit: a fitted whitening: mean (D,), matrix (D, K).
        name: layer name.
        dtype: Keras dtype policy, e.g. ``"mixed_bfloat16"``.

    Returns:
        A built, non-trainable ``keras.layers.Dense``: (N, D) -> (N, K), computed in
        the policy's dtype (float32 weights either way).
    """
    features, units = fit.matrix.shape
    layer = keras.layers.Dense(
        units, kernel_initializer="zeros", trainable=False, name=name, dtype=dtype
    )
    layer.build((None, features))
    bias = -(fit.mean.astype(np.float64) @ fit.matrix.astype(np.float64))
    layer.set_weights([fit.matrix, bias.astype(np.float32)])
    return layer


def raw_pixel_model(
    model: keras.Model,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    probabilities: bool = True,
    flip_tta: bool = False,
    name: str = "raw_pixel_classifier",
) -> keras.Model:
    """Wrap a model trained on standardised images so it accepts raw 0..255 pixels.

    Args:
        model: maps float32 (N, 32, 32, 3) standardised images to logits (N, C).
        mean, std: per-channel statistics (3,) of the raw training pixels.
        probabilities: end with a softmax, so ``predict`` returns probabilities.
        flip_tta: flip test-time augmentation: average the logits of each image
            and of its mirror (two forward passes; a mirrored input gives the same
            output, since the average is symmetric).
        name: name of the returned model.

    Returns:
        A Keras model: uint8 or float (N, 32, 32, 3) raw pixels -> float32 (N, C).
    """
    mean = np.asarray(mean, dtype=np.float32).ravel()
    std = np.asarray(std, dtype=np.float32).ravel()
    if mean.shape != (3,) or std.shape != (3,) or not (std > 0).all():
        raise ValueError(f"mean and std need 3 channel values, std > 0; got {mean}, {std}")
    inputs = keras.Input(shape=(32, 32, 3), name="raw_pixels")
    # built-in Normalization: casts uint8 to float32, stores mean/variance as weights
    standardise = keras.layers.Normalization(mean=mean, variance=std**2, name="standardise")
    standardised = standardise(inputs)
    outputs = model(standardised)
    if flip_tta:
        mirrored = model(mirror_model(name="mirror")(standardised))
        outputs = keras.layers.Average(name="flip_average")([outputs, mirrored])
    if probabilities:
        outputs = keras.layers.Softmax(name="probabilities")(outputs)
    return keras.Model(inputs, outputs, name=name)


def convolution_layers(model: keras.Model) -> list[str]:
    """Names of all convolution layers in ``model``, nested models included.

    Args:
        model: any Keras model.

    Returns:
        Layer names whose class is a convolution (Conv1D/2D/3D, separable,
        depthwise, transposed); empty for a dense-only network.
    """
    found = []
    for layer in model.layers:
        if any("Conv" in cls.__name__ for cls in type(layer).__mro__):
            found.append(layer.name)
        if isinstance(layer, keras.Model):  # a nested model: look inside it too
            found.extend(convolution_layers(layer))
    return found


def make_initializer(name: str, seed: int) -> keras.initializers.Initializer:
    """Return the seeded Keras kernel initialiser called ``name``.

    Args:
        name: one of :data:`INITIALIZERS`; ``"uniform"`` is U(-0.05, 0.05) and
            ``"normal"`` is N(0, 0.05²), Keras' defaults for those families.
        seed: int seed (ignored by ``"zeros"``).

    Returns:
        A Keras initializer.
    """
    check_choice("initializer", name, INITIALIZERS)
    init = keras.initializers
    factories = {
        "uniform": lambda: init.RandomUniform(-0.05, 0.05, seed=seed),
        "normal": lambda: init.RandomNormal(0.0, 0.05, seed=seed),
        "lecun_uniform": lambda: init.LecunUniform(seed=seed),
        "lecun_normal": lambda: init.LecunNormal(seed=seed),
        "glorot_uniform": lambda: init.GlorotUniform(seed=seed),
        "glorot_normal": lambda: init.GlorotNormal(seed=seed),
        "he_uniform": lambda: init.HeUniform(seed=seed),
        "he_normal": lambda: init.HeNormal(seed=seed),
        "zeros": init.Zeros,
    }
    return factories[name]()


def make_activation(
    activation: str, *, pieces: int = 2, name: str | None = None, dtype: str = "float32"
):
    """Return the activation layer called ``activation``.

    Args:
        activation: one of :data:`ACTIVATIONS`; ``"maxout"`` gives :class:`Maxout`
            (built-in reshape and max layers), which expects ``pieces`` times as
            many inputs as it outputs.
        pieces: maxout pieces per unit.
        name: the Keras layer name.
        dtype: Keras dtype policy, e.g. ``"mixed_bfloat16"``.

    Returns:
        A Keras layer, or for maxout a :class:`Maxout` called like one; float
        (N, F) -> float (N, F), or (N, F // pieces) for maxout.
    """
    check_choice("activation", activation, ACTIVATIONS)
    if activation == "maxout":
        return Maxout(pieces, name=name, dtype=dtype)
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name, dtype=dtype)
    if activation == "prelu":  # one learned slope per unit, starting at 0.25
        alpha = keras.initializers.Constant(0.25)
        return keras.layers.PReLU(alpha_initializer=alpha, name=name, dtype=dtype)
    return keras.layers.Activation(activation, name=name, dtype=dtype)
