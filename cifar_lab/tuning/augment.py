"""Input augmentation for dense networks, done in NumPy outside the compiled train step.

Keras layers such as ``RandomTranslation`` fail inside an XLA-compiled step
and ``RandomCrop`` is ~15x slower there, so batches are augmented here, on
the host, before they reach the (XLA-compiled) training step.
"""

from __future__ import annotations

import keras
import numpy as np

from cifar_lab.checks import check_bool, check_int, check_number, check_seed


def augment_batch(
    images: np.ndarray,
    rng: np.random.Generator,
    *,
    flip: bool = False,
    translate: int = 0,
    noise_std: float = 0.0,
) -> np.ndarray:
    """Randomly flip, shift and add Gaussian noise to a batch of images.

    Args:
        images: float32 (N, H, W, C), NHWC, standardised (0 is the mean pixel).
        rng: the generator that draws every random choice.
        flip: mirror each image left-right (the width axis, 2) with probability 1/2.
        translate: shift each image by up to this many pixels in each direction,
            filling the uncovered border with 0 (the mean pixel).
        noise_std: standard deviation of Gaussian noise added in float, in
            units of the per-channel std (0.1 is about 6 grey levels).

    Returns:
        A new float32 array of shape (N, H, W, C); ``images`` is not modified.
    """
    images = _check_images(images)
    _check_options(flip, translate, noise_std, images.shape)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(0)), got {rng!r}")
    out = images.copy()
    count = len(out)
    if flip:
        mirrored = rng.random(count) < 0.5
        out[mirrored] = out[mirrored, :, ::-1, :]
    if translate:
        out = _translate(out, rng, translate)
    if noise_std:
        out += rng.normal(0.0, noise_std, size=out.shape).astype(np.float32)
    return out


def _translate(images: np.ndarray, rng: np.random.Generator, limit: int) -> np.ndarray:
    count, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (limit, limit), (limit, limit), (0, 0)))
    top = rng.integers(0, 2 * limit + 1, size=count)
    left = rng.integers(0, 2 * limit + 1, size=count)
    rows = top[:, None] + np.arange(height)  # (N, H) source rows of each output row
    cols = left[:, None] + np.arange(width)  # (N, W)
    return padded[np.arange(count)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC (N, H, W, C); got shape {images.shape}")
    if images.dtype != np.float32:
        raise TypeError(
            f"images must be float32 (standardised), got {images.dtype}; "
            "convert with images.astype(np.float32) after normalising"
        )
    return images


def _check_options(flip: bool, translate: int, noise_std: float, shape: tuple[int, ...]) -> None:
    check_bool("flip", flip)
    check_int("translate", translate, minimum=0, maximum=min(shape[1], shape[2]) - 1)
    check_number("noise_std", noise_std, minimum=0)


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled, augmented minibatches for ``model.fit``, drawn in NumPy.

    The partial last batch is dropped, so every step has the same shape and
    the compiled step is traced once; a new shuffle each epoch still uses
    every image. Batch ``i`` of epoch ``e`` uses a generator seeded with
    ``(seed, e, i)``, so results do not depend on the order Keras asks.

    Args:
        X: float32 (N, 32, 32, 3) standardised images.
        y: (N, ...) targets, e.g. float32 one-hot (N, 10).
        batch_size: images per batch, at most N.
        flip, translate, noise_std: see :func:`augment_batch`.
        seed: int seed for shuffling and augmentation.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        *,
        flip: bool = False,
        translate: int = 0,
        noise_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.X, self.y = _check_images(X), np.asarray(y)
        if len(self.X) != len(self.y):
            raise ValueError(f"X and y lengths differ: {len(self.X)} and {len(self.y)}")
        self.batch_size = check_int("batch_size", batch_size, minimum=1, maximum=len(self.X))
        _check_options(flip, translate, noise_std, self.X.shape)
        self.options = {"flip": flip, "translate": translate, "noise_std": noise_std}
        self.seed, self.epoch = check_seed("seed", seed), 0
        self._order = self._rng(-1, 0).permutation(len(self.X))

    def __len__(self) -> int:
        return len(self.X) // self.batch_size

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        images = augment_batch(self.X[rows], self._rng(self.epoch, index), **self.options)
        return images, self.y[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._rng(-1, self.epoch).permutation(len(self.X))

    def release(self) -> None:
        """Drop the images and targets; afterwards the dataset is empty.

        Keras feeds a PyDataset through ``tf.data.Dataset.from_generator``, whose
        generator TensorFlow keeps reachable from the default graph until
        ``keras.backend.clear_session()``, so call this once ``fit`` is done.
        """
        # new empty arrays: a slice such as X[:0] would keep the whole buffer alive
        self.X = np.empty((0, *self.X.shape[1:]), self.X.dtype)
        self.y = np.empty((0, *self.y.shape[1:]), self.y.dtype)
        self._order = np.empty(0, np.int64)

    def _rng(self, epoch: int, index: int) -> np.random.Generator:
        # epoch -1 draws the shuffles, so they never share a stream with a batch
        return np.random.default_rng([self.seed, epoch + 1, index])
