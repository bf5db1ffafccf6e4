"""Plots: each picture appears once in Jupyter, however it is called; scripts keep working."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from kernel_messages import MessageKernel

import cifar_lab as lab
from cifar_lab.data.formats import CLASS_NAMES
from cifar_lab.history import RECORD_KEYS, TrainingLog
from cifar_lab.plots import TRAINING_LABEL
from cifar_lab.tuning.plots import plot_accuracy_heatmap, plot_top_curves

SETUP = """
import numpy as np
import pandas as pd

import cifar_lab as lab
from cifar_lab.data.formats import CLASS_NAMES
from cifar_lab.tuning.plots import (
    plot_accuracy_heatmap,
    plot_optimizer_batchnorm,
    plot_top_curves,
)

rng = np.random.default_rng(0)
images = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
labels = np.arange(60) % 10
predictions = (labels + (np.arange(60) < 7)) % 10
history = [
    {"iteration": i, "epoch": 0, "loss": 2 - i / 10, "accuracy": None,
     "val_loss": 2 - i / 9 if i % 4 == 0 else None,
     "val_accuracy": i / 10 if i % 4 == 0 else None}
    for i in range(9)
]
frame = pd.DataFrame(
    {"trial": [0, 1, 2], "state": "COMPLETE", "val_accuracy": [0.5, 0.4, 0.3],
     "hidden_sizes": ["64", "64", "128"], "activation": ["relu", "tanh", "relu"],
     "optimizer": ["adam", "sgd", "adam"], "batch_norm": ["none", "none", "before"],
     "history": [[{"epoch": 1, "val_accuracy": v - 0.1}, {"epoch": 2, "val_accuracy": v}]
                 for v in (0.5, 0.4, 0.3)]}
)
"""
CALLS = {
    "show_class_samples": "lab.show_class_samples(images, labels, CLASS_NAMES, "
    "samples_per_class=2)",
    "plot_history": "lab.plot_history(history)",
    "plot_confusion_matrix": "lab.plot_confusion_matrix(labels, predictions, CLASS_NAMES)",
    "show_misclassified": "lab.show_misclassified(images, labels, predictions, "
    "CLASS_NAMES, num_images=3)",
    "plot_accuracy_heatmap": "plot_accuracy_heatmap(frame, 'hidden_sizes', 'activation')",
    "plot_top_curves": "plot_top_curves(frame, top=2)",
    "plot_optimizer_batchnorm": "plot_optimizer_batchnorm(frame)",
    "show_templates": "lab.show_templates(rng.normal(size=(3, 4, 5, 3)), titles=['a', 'b', 'c'])",
}
STYLES = {"trailing": "{call}", "assigned": "result = {call}", "semicolon": "{call};"}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    session = MessageKernel(tmp_path_factory.mktemp("kernel"))
    try:
        assert session.execute(SETUP).status == "ok"
        yield session
    finally:
        session.close()


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("function", CALLS)
def test_each_plot_appears_once_in_jupyter(kernel, function, style):
    cell = kernel.execute(STYLES[style].format(call=CALLS[function]))
    assert cell.images() == 1, f"{function} ({style}): {cell.counts()}"
    # nothing else: no text repr of the returned Figure/Axes, no stream output
    assert not cell.of_type("execute_result", "stream", "error"), cell.messages


def test_a_later_cell_can_show_the_figure_again(kernel):
    assert kernel.execute("fig = lab.plot_history(history)").images() == 1
    assert kernel.execute("fig.axes[0].set_yscale('log')\nfig").images() == 1
    assert kernel.execute("from IPython.display import display\ndisplay(fig)").images() == 1
    # the functions drew on their own figures and closed them: nothing left to flush
    assert kernel.execute("import matplotlib.pyplot as plt\nplt.get_fignums()").text() == ""
    result = kernel.execute("plt.get_fignums()").of_type("execute_result")
    assert result[0]["content"]["data"]["text/plain"] == "[]"


def test_a_sweep_plot_on_the_callers_axes_is_shown_once_by_the_backend(kernel):
    code = (
        "import matplotlib.pyplot as plt\n"
        "figure, axes = plt.subplots(1, 2)\n"
        "plot_top_curves(frame, top=2, ax=axes[0])\n"
        "plot_optimizer_batchnorm(frame, ax=axes[1]);"
    )
    assert kernel.execute(code).images() == 1


def frame_for_sweeps() -> pd.DataFrame:
    curves = [
        [{"epoch": 1, "val_accuracy": v - 0.1}, {"epoch": 2, "val_accuracy": v}]
        for v in (0.5, 0.4)
    ]
    return pd.DataFrame(
        {"trial": [0, 1], "val_accuracy": [0.5, 0.4], "hidden_sizes": ["64", "128"],
         "activation": ["relu", "tanh"], "optimizer": ["adam", "sgd"],
         "batch_norm": ["none", "before"], "history": curves}
    )  # fmt: skip


def test_outside_jupyter_plots_stay_open_and_save_to_files(tmp_path):
    plt.close("all")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(20) % 10
    history = [{"iteration": i, "loss": 1.0 / (i + 1), "val_accuracy": 0.1 * i} for i in range(3)]
    figures = [
        lab.show_class_samples(images, labels, CLASS_NAMES, samples_per_class=1),
        lab.plot_history(history),
        lab.plot_confusion_matrix(labels, (labels + 1) % 10, CLASS_NAMES),
        lab.show_misclassified(images, labels, (labels + 1) % 10, CLASS_NAMES),
        plot_accuracy_heatmap(frame_for_sweeps()).figure,
        plot_top_curves(frame_for_sweeps()).figure,
    ]
    assert plt.get_fignums() == [figure.number for figure in figures]  # plt.show() shows them
    for index, figure in enumerate(figures):
        assert not hasattr(figure, "_ipython_display_")  # an ordinary Figure
        figure.savefig(tmp_path / f"{index}.png")
        assert (tmp_path / f"{index}.png").stat().st_size > 1000
    plt.close("all")


def legend_of(axis) -> list[str]:
    return [text.get_text() for text in axis.get_legend().get_texts()]


def test_learning_curves_draw_the_running_mean_and_the_validation_points():
    log = TrainingLog(range(100), num_epochs=2, print_every=60, verbose=False)
    losses = iter(np.linspace(2.0, 1.0, 200))
    with log:
        for _ in log.epochs(lambda: {"accuracy": 0.3, "val_loss": 1.5, "val_accuracy": 0.4}):
            for _ in range(100):
                log.step(next(losses), 32)
    history = log.history
    for epoch in (0, 1):
        points = [r for r in history if r["epoch"] == epoch and r["loss"] is not None]
        assert len(points) >= 20, f"epoch {epoch}: {len(points)} points"
    assert all(list(record) == list(RECORD_KEYS) for record in history)
    validations = history.validations()
    assert validations.column("iteration") == [0, 60, 99, 120, 180, 199]
    assert history[-1]["val_accuracy"] == 0.4  # the epoch's last record is its validation

    figure = lab.plot_history(history, title="tiny")
    loss_axis, accuracy_axis = figure.axes
    assert legend_of(loss_axis) == [TRAINING_LABEL.format("loss"), "validation loss"]
    assert TRAINING_LABEL.format("loss") == "training loss (running mean over the epoch)"
    assert legend_of(accuracy_axis) == [
        "training accuracy (running mean over the epoch)",
        "validation accuracy",
    ]
    curve, validation = loss_axis.lines
    assert len(curve.get_xdata()) == len(history) >= 40
    np.testing.assert_array_equal(validation.get_xdata(), validations.column("iteration"))
    np.testing.assert_allclose(curve.get_ydata(), history.column("loss"))
    plt.close(figure)


def test_templates_are_scaled_each_on_its_own_and_bad_shapes_are_refused():
    plt.close("all")
    rng = np.random.default_rng(0)
    # two templates of very different sizes and signs, rows != columns
    templates = np.stack([rng.normal(size=(4, 5, 3)), -100 + 0.01 * rng.normal(size=(4, 5, 3))])
    figure = lab.show_templates(templates, titles=["small", "large"], title="two")
    shown = [axis.get_images()[0].get_array() for axis in figure.axes]
    for template, image in zip(templates, shown, strict=True):
        assert image.shape == (4, 5, 3)
        assert float(np.min(image)) == 0.0 and float(np.max(image)) == 1.0
        # a linear map of its own template: the order of the values is kept
        order = np.argsort(template, axis=None)
        np.testing.assert_array_equal(np.argsort(image, axis=None), order)
    assert [axis.get_title() for axis in figure.axes] == ["small", "large"]
    constant = lab.show_templates(np.zeros((1, 2, 2, 3)))  # no division by a zero range
    assert np.all(constant.axes[0].get_images()[0].get_array() == 0.0)
    with pytest.raises(ValueError, match="shape"):
        lab.show_templates(np.zeros((4, 5, 3, 2, 1)))
    with pytest.raises(ValueError, match="titles"):
        lab.show_templates(templates, titles=["one"])
    plt.close("all")
