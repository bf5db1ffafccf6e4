"""Pictures for the course: sample grids, learning curves, confusion matrices.

Every function returns the matplotlib Figure, and each picture appears once:

* In Jupyter (the inline backend, also under nbclient and nbval) the function
  shows the figure itself, where it is called, and closes it, so the backend
  does not draw it a second time. The returned Figure shows nothing more in
  the same cell, whether the call ends the cell, is assigned
  (``fig = lab.plot_history(...)``) or ends with ``;``. In a later cell
  ``fig`` or ``display(fig)`` shows it again, e.g. after a change.
* Elsewhere (scripts, tests, other backends) nothing is shown or closed: the
  Figure is an ordinary open pyplot figure; ``plt.show()`` shows it.

Save a picture with the returned Figure in either case:
``lab.plot_history(history).savefig("curves.png")`` (a closed figure saves fine).
None calls ``plt.show()``, so they also work headless.
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


# ------------------------------------------------------------ one picture per call
_cells = {"count": 0, "shell": None}  # cells run by the IPython shell we listen to


def _next_cell(*_info) -> None:
    _cells["count"] += 1


def _inline_shell():
    """The IPython shell when figures go to Jupyter's inline backend, else None."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if hasattr(ipython, "get_ipython") else None
    if shell is None:
        return None
    import matplotlib

    if "inline" not in str(matplotlib.get_backend()).lower():
        return None
    if _cells["shell"] is not shell:  # count cells, so a repeat request can tell
        shell.events.register("pre_run_cell", _next_cell)
        _cells["shell"] = shell
    return shell


class _ShownInThisCell:
    """An artist's ``_ipython_display_``: nothing in the cell that showed it, else the usual."""

    def __init__(self, artist, cell: int) -> None:
        self.artist, self.cell = artist, cell

    def __call__(self) -> None:
        if _cells["count"] == self.cell:
            return  # the plotting function showed it already
        from IPython.display import display

        del self.artist._ipython_display_
        try:
            display(self.artist)
        finally:
            self.artist._ipython_display_ = self


def display_once(figure, *artists):
    """Show ``figure`` once in Jupyter's inline backend; return it unchanged.

    In a kernel with the inline backend the figure is displayed now and closed,
    so the backend's end-of-cell flush skips it, and ``figure`` (and each of
    ``artists``, e.g. an Axes a function returns) shows nothing more in this
    cell: neither as the cell's result nor through ``display``. Anywhere else
    this does nothing.

    Args:
        figure: a matplotlib Figure made by the plotting function.
        artists: other objects the function returns instead of the Figure.

    Returns:
        ``figure``.
    """
    shell = _inline_shell()
    if shell is None:
        return figure
    from IPython.display import display

    try:  # the inline backend's own metadata (e.g. a dark background hint)
        from matplotlib_inline.backend_inline import _fetch_figure_metadata

        metadata = _fetch_figure_metadata(figure)
    except Exception:
        metadata = None
    display(figure, metadata=metadata)
    _pyplot().close(figure)
    for artist in (figure, *artists):
        artist._ipython_display_ = _ShownInThisCell(artist, _cells["count"])
    return figure


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
    return display_once(fig)


TRAINING_LABEL = "training {} (running mean over the epoch)"


def _series(history: list[Mapping], key: str, x: str) -> tuple[list, list]:
    steps, values = [], []
    for record in history:
        if record.get(key) is not None:
            steps.append(record[x])
            values.append(record[key])
    return steps, values


def plot_history(history: Iterable[Mapping], *, title: str = "Training"):
    """Loss and accuracy curves against the iteration (or, failing that, epoch) number.

    The training curves join every record that carries the metric: the loops
    of Parts II-IV record the running mean of the training loss over the epoch
    about 25 times per epoch (see :class:`cifar_lab.history.TrainingLog`), and
    their validation records add the training accuracy. The validation values
    are drawn as joined points.

    Args:
        history: records with ``iteration`` or ``epoch`` and any of ``loss``,
            ``accuracy``, ``val_loss``, ``val_accuracy`` (as the training loops return;
            a value that is None or absent is not drawn).
        title: figure title.

    Returns:
        The matplotlib Figure, shown once in Jupyter (see the module docstring).
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
        steps, values = _series(history, metric, x)
        if values:
            style = "-" if len(values) > 30 else "-o"
            axis.plot(steps, values, style, markersize=3, label=TRAINING_LABEL.format(metric))
        steps, values = _series(history, "val_" + metric, x)
        if values:
            axis.plot(steps, values, "-o", markersize=4, label=f"validation {metric}")
        axis.set_xlabel(x)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return display_once(fig)


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
    return display_once(fig)


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
    return display_once(fig)


def show_templates(templates: np.ndarray, *, titles: Sequence[str] = (), title: str = ""):
    """A row of weight templates, each scaled on its own to the full grey/colour range.

    A template's values are weights, not pixels: each is mapped linearly from
    its own minimum and maximum to [0, 1], so the picture shows its pattern,
    not its size (compare sizes with the numbers, not the brightness).

    Args:
        templates: float array (K, height, width, 3) or (K, height, width),
            e.g. first-layer weights reshaped to images.
        titles: K short labels, or none.
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    templates = np.asarray(templates, dtype=np.float64)
    if templates.ndim not in (3, 4) or len(templates) == 0:
        raise ValueError(
            f"templates must have shape (K, height, width[, 3]) with K >= 1, got {templates.shape}"
        )
    titles = list(titles)
    if titles and len(titles) != len(templates):
        raise ValueError(f"{len(titles)} titles for {len(templates)} templates")
    axes_of = tuple(range(1, templates.ndim))
    low = templates.min(axis=axes_of, keepdims=True)
    span = templates.max(axis=axes_of, keepdims=True) - low
    scaled = (templates - low) / np.where(span > 0, span, 1.0)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(scaled), figsize=(1.1 * len(scaled), 1.5), squeeze=False)
    for index, axis in enumerate(axes[0]):
        axis.imshow(scaled[index], cmap="gray" if scaled.ndim == 3 else None)
        axis.axis("off")
        if titles:
            axis.set_title(titles[index], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return display_once(fig)
