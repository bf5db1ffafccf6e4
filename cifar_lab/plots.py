"""Pictures for the course: sample grids, learning curves, confusion matrices.

Every function returns the matplotlib Figure (notebooks display it inline);
none calls ``plt.show()``, so they also work headless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from cifar_lab.checks import check_int
from cifar_lab.metrics import confusion_matrix
from cifar_lab.seeding import SeedLike, as_generator


def _pyplot():
    import matplotlib.pyplot as plt  # late: keeps `import cifar_lab` light

    return plt


def show_class_samples(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    samples_per_class: int = 7,
    seed: SeedLike = 0,
):
    """Grid of random images, one column per class.

    Args:
        images: uint8 array (N, 32, 32, 3), raw pixels (see ``CIFAR10Splits.denormalise``).
        labels: int array (N,).
        class_names: names indexed by label.
        samples_per_class: rows in the grid.
        seed: int or Generator choosing the samples.

    Returns:
        The matplotlib Figure.
    """
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 pixels, got {images.dtype}; denormalise first")
    samples_per_class = check_int("samples_per_class", samples_per_class, minimum=1)
    rng = as_generator(seed)
    plt = _pyplot()
    fig, axes = plt.subplots(
        samples_per_class, len(class_names), figsize=(len(class_names), samples_per_class)
    )
    axes = np.asarray(axes).reshape(samples_per_class, len(class_names))
    for label, name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        picks = rng.choice(members, size=min(samples_per_class, len(members)), replace=False)
        for row in range(samples_per_class):
            axis = axes[row, label]
            axis.axis("off")
            if row < len(picks):
                axis.imshow(images[picks[row]])
        axes[0, label].set_title(name, fontsize=8)
    fig.tight_layout()
    return fig


def _series(history: Iterable[Mapping], key: str, x: str) -> tuple[list, list]:
    steps, values = [], []
    for record in history:
        if record.get(key) is not None:
            steps.append(record[x])
            values.append(record[key])
    return steps, values


def plot_history(history: Iterable[Mapping], *, title: str = "Training"):
    """Loss and accuracy curves against the iteration (or, failing that, epoch) number.

    Args:
        history: records with ``iteration`` or ``epoch`` and any of ``loss``,
            ``accuracy``, ``val_loss``, ``val_accuracy`` (as the training loops return).
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    history = list(history)
    x = next((key for key in ("iteration", "epoch") if history and key in history[0]), None)
    if x is None:
        raise ValueError(
            "history must be a non-empty list of records with an 'iteration' or 'epoch' key"
        )
    plt = _pyplot()
    fig, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            steps, values = _series(history, prefix + metric, x)
            if values:
                label = "validation" if prefix else "training (running mean)"
                axis.plot(steps, values, style, markersize=3, label=label)
        axis.set_xlabel(x)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], *, title: str = ""
):
    """Row-normalised confusion matrix with counts written in each cell.

    Args:
        y_true: int labels (N,).
        y_pred: int predictions (N,).
        class_names: names indexed by label.
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    counts = confusion_matrix(y_true, y_pred, len(class_names))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(7, 6))
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for i in ticks:
        for j in ticks:
            colour = "white" if rates[i, j] > 0.5 else "black"
            axis.text(j, i, counts[i, j], ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(image, ax=axis, label="fraction of true class")
    axis.set_title(title or f"Confusion matrix (accuracy {np.trace(counts) / counts.sum():.1%})")
    fig.tight_layout()
    return fig


def show_misclassified(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    *,
    num_images: int = 10,
    seed: SeedLike = 0,
):
    """A row of misclassified images titled "true -> predicted".

    Args:
        images: uint8 array (N, 32, 32, 3).
        y_true: int labels (N,).
        y_pred: int predictions (N,).
        class_names: names indexed by label.
        num_images: how many to show (fewer if fewer are wrong).
        seed: int or Generator choosing which mistakes to show.

    Returns:
        The matplotlib Figure.
    """
    num_images = check_int("num_images", num_images, minimum=1)
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))
    plt = _pyplot()
    shown = as_generator(seed).permutation(wrong)[:num_images]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(1.6 * max(len(shown), 1), 2))
    for axis, index in zip(np.atleast_1d(axes), shown, strict=False):
        axis.imshow(images[index])
        axis.set_title(
            f"{class_names[y_true[index]]}\n-> {class_names[y_pred[index]]}", fontsize=8
        )
    for axis in np.atleast_1d(axes):
        axis.axis("off")
    fig.suptitle(f"{len(wrong)} of {len(y_true)} misclassified; a sample")
    fig.tight_layout()
    return fig
