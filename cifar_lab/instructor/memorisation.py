"""Memorised test images: a perturbation probe by default, and the instructor's private images.

The CIFAR-10 test images are public, so a Part V model can memorise them: a
dense-only lookup whose ``Dense`` kernel holds the flattened test images (a
nearest-neighbour search written as one matrix product) scores 100% on them
and chance on anything else. Recomputing the accuracy on the public images
cannot tell it from a network that learned; two things the student cannot see
can:

* **The probe** (every grading run on CIFAR-10; not on the synthetic stand-in,
  whose classes are not mirror-symmetric): the grader re-scores the model on a
  perturbed copy of the very split it scores, each image mirrored, shifted by up to
  ``PROBE_SHIFT`` pixels (edges repeated), given Gaussian noise of
  ``PROBE_NOISE`` grey levels and re-encoded as JPEG at ``PROBE_JPEG_QUALITY``.
  The perturbation is drawn from a seed chosen at grading time. CIFAR-10's
  classes look alike mirrored, so a network that learned them barely moves
  (it need not have seen a mirrored image); a lookup keyed on the test images'
  pixels finds the wrong key, even a nearest-neighbour lookup that shrugs off
  shifts, noise and JPEG, and loses half its accuracy or more. Measured
  numbers and the threshold arithmetic are at :data:`HONEST_PROBE_DROP`. The
  probe is public code: a student who stores mirrored copies of the test images
  as well, or wraps the lookup in flip test-time augmentation, can pass it
  (nearest-neighbour search shrugs off the small shift, noise and JPEG); that is
  why the private images exist.
* **Private images** (``grade --private-test DIR``): labelled 32x32 images the
  instructor never published (``DIR/<class>/<image>``, CIFAR-10's class names).
  A model whose public-test accuracy exceeds its private accuracy by more
  than sampling error has learned the public images, not the classes. This
  is the stronger defence (a determined student could memorise perturbed
  copies of the public images too, but never images they do not have), so
  it is offered whenever the instructor holds such images.

Both are judged here, from accuracies the scoring child returns; nothing the
student's files claim enters the decision.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from cifar_lab.checks import check_int
from cifar_lab.data.formats import CLASS_NAMES, IMAGE_SUFFIXES
from cifar_lab.data.limits import open_image_header
from cifar_lab.instructor.findings import Finding

PROBE_SHIFT = 1  # pixels, in each direction
PROBE_NOISE = 2.0  # standard deviation, grey levels
PROBE_JPEG_QUALITY = 90
# The largest fall an honest network may show under the probe. Measured on real
# CIFAR-10 (5,000 test images of the shared copy, probe seeds 1 and 2): dense
# networks 3072-512-10 and 3072-1024-512-10 trained on 20,000 images, without flip
# augmentation, fell from 0.4702 to 0.4632 and from 0.4916 to 0.4840 under seed 1
# (0.7 and 0.8 points) and by -0.3 and 0.3 points under seed 2; the FAST rung's
# network (ZCA whitening, flips, +-2 px shifts; 1024-512, 5 epochs on 20,000 images)
# fell from 0.4566 by 0.7 / 0.8 points, and by 1.0 / 0.6 with flip TTA (0.4772).
# A nearest-neighbour lookup of the test images (the most robust lookup: shifts,
# noise and JPEG alone leave it at 96-100%) fell from 1.0 to 0.486 / 0.460 keyed on
# 500 images and to 0.391 / 0.392 keyed on 5,000. The limit is this bound plus
# three standard errors: 0.05 + 0.021 = 0.071 for 10,000 images at 56%,
# 0.05 + 0.094 = 0.144 for quick's 500, far below a lookup's fall of 0.5 or more.
HONEST_PROBE_DROP = 0.05
MAX_PRIVATE_IMAGES = 100_000
MAX_PRIVATE_FILE_BYTES = 1 << 20


def probe_images(images: np.ndarray, seed: int) -> np.ndarray:
    """The probe's perturbed copy of ``images``: mirrored, shifted, noisy, re-encoded as JPEG.

    Args:
        images: uint8 raw pixels (N, 32, 32, 3).
        seed: the grading run's probe seed (any int >= 0).

    Returns:
        uint8 (N, 32, 32, 3); image i is ``images[i]`` mirrored left to right,
        shifted by (dy, dx) in ``-PROBE_SHIFT..PROBE_SHIFT`` with its edge pixels
        repeated, plus rounded Gaussian noise, then JPEG-encoded and decoded.
    """
    from PIL import Image

    seed = check_int("seed", seed, minimum=0)
    images = np.asarray(images, dtype=np.uint8)[:, :, ::-1]  # CIFAR-10 looks alike mirrored
    rng = np.random.default_rng(seed)
    pad = PROBE_SHIFT
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    shifts = rng.integers(-pad, pad + 1, size=(len(images), 2))
    height, width = images.shape[1:3]
    out = np.empty_like(images)
    for index, (dy, dx) in enumerate(shifts):
        window = padded[index, pad + dy : pad + dy + height, pad + dx : pad + dx + width]
        noisy = np.rint(window + rng.normal(0.0, PROBE_NOISE, window.shape))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
            buffer, format="JPEG", quality=PROBE_JPEG_QUALITY
        )
        out[index] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def _spread(first: float, n_first: int, second: float, n_second: int) -> float:
    """Standard error of the difference of two accuracies (as if independent: conservative)."""
    return math.sqrt(first * (1 - first) / n_first + second * (1 - second) / n_second)


def probe_finding(public: float, probed: float, images: int) -> Finding | None:
    """Flag a model whose accuracy falls under the probe by more than an honest network's.

    Args:
        public: accuracy on the scored split.
        probed: accuracy on its perturbed copy.
        images: images in the split (N).

    Returns:
        A ``flagged`` finding, or None. The limit is ``HONEST_PROBE_DROP`` plus
        three standard errors of the difference (the same images twice, treated
        as independent, which overstates the error and so favours the student).
    """
    limit = HONEST_PROBE_DROP + 3 * _spread(public, images, probed, images)
    if public - probed <= limit:
        return None
    message = (
        f"memorised test images? the saved model scores {public:.4f} on the test images but "
        f"{probed:.4f} on the same images shifted by up to {PROBE_SHIFT} pixels, with noise "
        f"and JPEG re-encoding: a fall of {public - probed:.4f}, over the {limit:.4f} an "
        "honest network stays within"
    )
    return Finding("flagged", "part5", message)


def private_finding(
    public: float, n_public: int, private: float, n_private: int
) -> Finding | None:
    """Flag a model that scores better on the public test images than on the private ones.

    Only a public advantage is flagged: no model can memorise images it never
    saw, and private images that happen to be easier say nothing against it.

    Args:
        public, n_public: accuracy on the scored public split, and its size.
        private, n_private: accuracy on the instructor's private images, and their number.

    Returns:
        A ``flagged`` finding when ``public - private`` exceeds three standard
        errors of the difference, else None.
    """
    limit = 3 * _spread(public, n_public, private, n_private)
    if public - private <= limit:
        return None
    message = (
        f"memorised test images? the saved model scores {public:.4f} on the public test "
        f"images but {private:.4f} on {n_private:,} private ones the student never saw: "
        f"{public - private:.4f} apart, beyond the {limit:.4f} sampling error allows"
    )
    return Finding("flagged", "part5", message)


def read_private_test(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the instructor's private labelled images: ``folder/<class>/<image>``.

    Args:
        folder: a folder with one sub-folder per CIFAR-10 class name (``airplane`` ...
            ``truck``) holding 32x32 RGB images (PNG, JPEG, ...); not every class
            needs images.

    Returns:
        (uint8 images (N, 32, 32, 3), int64 labels (N,)), in sorted path order.

    Raises:
        ValueError: the folder is missing or empty, a class folder is unknown, or
            an image is not 32x32, cannot be decoded, or is over 1 MB.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--private-test {folder} is not a folder")
    paths = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)
    )
    if not paths:
        raise ValueError(f"--private-test {folder} holds no <class>/<image> files")
    if len(paths) > MAX_PRIVATE_IMAGES:
        raise ValueError(f"--private-test {folder} holds over {MAX_PRIVATE_IMAGES:,} images")
    images = np.empty((len(paths), 32, 32, 3), np.uint8)
    labels = np.empty(len(paths), np.int64)
    for index, path in enumerate(paths):
        label = path.parent.name
        if path.parent.parent != folder or label not in CLASS_NAMES:
            raise ValueError(f"{path}: put each image in {folder}/<class>/, class one of "
                             f"{', '.join(CLASS_NAMES)}")  # fmt: skip
        if path.stat().st_size > MAX_PRIVATE_FILE_BYTES:
            raise ValueError(f"{path}: over 1 MB; private test images are 32x32")
        try:  # the header's 32x32 is checked before any pixel is decoded
            with open_image_header(path.read_bytes(), str(path)) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except Exception as error:
            raise ValueError(f"{path}: cannot decode the image ({error})") from error
        images[index], labels[index] = pixels, CLASS_NAMES.index(label)
    return images, labels
