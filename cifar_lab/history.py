"""Training-loop bookkeeping: the History records a loop returns, and how it is kept.

Shared by the barebones (Part II) and Keras (Parts III-IV) loops:
:class:`TrainingLog` holds their common mechanics (seeding, the divergence
check, the validation schedule, the records); their argument checks live in
:mod:`cifar_lab.checks`. Free of TensorFlow, so histories can be loaded and
plotted cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping

from cifar_lab.progress import Progress
from cifar_lab.seeding import set_seed

# The fields of every record that train_part2 and train_part34 return, in this order.
RECORD_KEYS = ("iteration", "epoch", "loss", "accuracy", "val_loss", "val_accuracy")
VALIDATION_KEYS = ("val_loss", "val_accuracy")
# The learning curve: the running mean of the training loss, this many times per epoch...
CURVE_POINTS_PER_EPOCH = 25
# ...or, while the length of an epoch is unknown (batches without len()), every this many steps.
UNSIZED_CURVE_EVERY = 10


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


class History(list):
    """A list of dict records in iteration order, ready for pandas.

    The training loops keep two kinds of record, with the same keys:
    *validation records* (``val_loss``/``val_accuracy`` measured) and, between
    them, *curve records* that only carry the running mean of the training
    loss (their other fields are None). The last record of every epoch is a
    validation record, so ``history[-1]["val_accuracy"]`` is the final
    validation accuracy.

    Example::

        model, history = lab.train_part34(...)
        frame = history.to_dataframe()
        frame.plot(x="iteration", y="loss")  # the learning curve
        history.validations().to_dataframe()  # one row per validation

    Attributes:
        params: ``train_part2``'s trained ``tf.Variable`` list (Part II's model is
            its ``model_fn`` with them, which the grader scores); None for
            ``train_part34``, which returns its model beside the history.
    """

    params: list | None = None

    def validations(self) -> History:
        """Only the records with a validation measurement, in order."""
        return History(
            record
            for record in self
            if any(record.get(key) is not None for key in VALIDATION_KEYS)
        )

    def to_dataframe(self):
        """Return the records as a ``pandas.DataFrame`` (one row per record)."""
        import pandas as pd  # late import: pandas is only needed for analysis

        return pd.DataFrame.from_records(list(self))

    def column(self, key: str) -> list:
        """Return one field across all records, e.g. ``history.column("val_accuracy")``."""
        missing = [index for index, record in enumerate(self) if key not in record]
        if missing:
            known = sorted(self[missing[0]])
            raise KeyError(f"record {missing[0]} has no {key!r}; its fields are {known}")
        return [record[key] for record in self]

    def __repr__(self) -> str:
        if not self:
            return "History([])"
        last = ", ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in self[-1].items()
        )
        return f"History({len(self)} records; last: {last})"


def check_loss(loss: float, iteration: int, *, learning_rate: float | None = None) -> float:
    """Stop training with a clear error when the loss is NaN or infinite.

    Args:
        loss: the loss of one training step, as a Python float.
        iteration: the step number (0-based), named in the error.
        learning_rate: the learning rate, quoted in the suggested fix when known.

    Returns:
        ``loss`` unchanged, when finite.

    Raises:
        TrainingDivergedError: the loss is NaN or +/-inf.
    """
    if math.isfinite(loss):
        return loss
    advice = "Lower the learning rate (try 10x smaller)"
    if learning_rate is not None:
        advice = (
            f"The learning rate {learning_rate:g} is probably too high; "
            f"try {learning_rate / 10:g} or lower"
        )
    raise TrainingDivergedError(
        f"training diverged: the loss became {loss} at iteration {iteration}. {advice}, "
        "and check that the inputs are normalised."
    )


class TrainingLog:
    """The bookkeeping that ``train_part2`` and ``train_part34`` share, so they behave alike.

    Both loops use it the same way::

        log = TrainingLog(train_dset, num_epochs, print_every, seed=seed)  # seeds now
        with log:  # the progress line
            params = init_fn()  # built after the seeding, so the initial weights repeat
            for epoch in log.epochs(validate, learning_rate=learning_rate):
                for x_batch, y_batch in train_dset:
                    loss = ...  # one training step
                    log.step(loss, len(y_batch))
        return log.history

    The rules, one for both loops:

    * Seeding: with a ``seed``, :func:`cifar_lab.seeding.set_seed` runs first.
    * Divergence: :meth:`step` raises :class:`TrainingDivergedError` when the loss
      is NaN or infinite, naming the iteration whose step produced it.
    * Validation schedule: after iteration ``t`` (0-based, counted across epochs)
      when ``t % print_every == 0``, and after the last iteration of each epoch;
      once when both apply.
    * Records: one per validation, with the keys :data:`RECORD_KEYS`. ``epoch``
      is 0-based; ``loss`` is the running mean of the step losses over the epoch
      so far, weighted by batch size; ``validate()`` supplies ``accuracy`` (the
      training accuracy, a running mean likewise), ``val_loss`` and
      ``val_accuracy``, and any it leaves out are None.
    * The learning curve: between validations, a curve record (the same keys,
      only ``iteration``, ``epoch`` and ``loss`` set) after every
      ``curve_every``-th step of an epoch, ``curve_every = max(1, steps per
      epoch // 25)``: at least 25 points per epoch (every step of a shorter
      one). Without ``len(train_dset)``, every 10th step in the first epoch,
      then as above with the length the first epoch had.

    Args:
        train_dset: the training batches; its ``len``, if any, sizes the progress line.
        num_epochs: passes over ``train_dset``, a positive int (the loops check it).
        print_every: validate every this many iterations, a positive int.
        seed: if given, seeds Python, NumPy, TensorFlow and Keras now.
        verbose: print a line per record.
        progress: show a progress line; None follows ``verbose``.
    """

    def __init__(
        self,
        train_dset: Iterable,
        num_epochs: int,
        print_every: int,
        *,
        seed: int | None = None,
        verbose: bool = True,
        progress: bool | None = None,
    ) -> None:
        if seed is not None:
            set_seed(seed)
        self.num_epochs, self.print_every, self.verbose = num_epochs, print_every, verbose
        steps = len(train_dset) if hasattr(train_dset, "__len__") else None
        total = None if steps is None else steps * num_epochs
        show = verbose if progress is None else progress
        self.bar = Progress(total, enabled=show, description="train")
        self.history = History()
        self.iteration = self.epoch = 0
        self.curve_every = UNSIZED_CURVE_EVERY if steps is None else _curve_every(steps)
        self._sized = steps is not None
        self._validate: Callable[[], Mapping] = dict
        self._learning_rate: float | Callable[[], float | None] | None = None
        self._loss_sum, self._count, self._epoch_steps = 0.0, 0, 0
        self._validated = -1  # the iteration of the latest validation

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.close()

    def epochs(
        self,
        validate: Callable[[], Mapping[str, float | None]],
        *,
        learning_rate: float | Callable[[], float | None] | None = None,
    ) -> Iterator[int]:
        """Yield the epoch numbers 0, 1, ...; validate after the last step of each.

        Args:
            validate: measures the model now; returns some of ``accuracy``,
                ``val_loss`` and ``val_accuracy``.
            learning_rate: quoted by the divergence error: a number, or a function
                returning the current one (e.g. an optimizer's scheduled rate).
        """
        self._validate, self._learning_rate = validate, learning_rate
        for epoch in range(self.num_epochs):
            self.epoch, self._loss_sum, self._count, self._epoch_steps = epoch, 0.0, 0, 0
            yield epoch
            if self._count and self._validated != self.iteration - 1:
                if self.history and self.history[-1]["iteration"] == self.iteration - 1:
                    self.history.pop()  # a curve record, replaced by the validation
                self._record(self.iteration - 1)
            if not self._sized and self._epoch_steps:  # now the epoch's length is known
                self.curve_every, self._sized = _curve_every(self._epoch_steps), True

    def step(self, loss, batch_size: int) -> float:
        """Book one training step: check its loss, average it, validate when due.

        Args:
            loss: the step's mean loss over its batch (a float or a scalar tensor).
            batch_size: the number of examples in the batch.

        Returns:
            The loss as a Python float.

        Raises:
            TrainingDivergedError: the loss is NaN or infinite.
        """
        loss = float(loss)
        if not math.isfinite(loss):
            rate = self._learning_rate
            check_loss(loss, self.iteration, learning_rate=rate() if callable(rate) else rate)
        self._loss_sum += loss * batch_size
        self._count += batch_size
        self._epoch_steps += 1
        self.bar.update(loss=loss)
        if self.iteration % self.print_every == 0:
            self._record(self.iteration)
        elif self._epoch_steps % self.curve_every == 0:
            self.history.append(self._curve_record(self.iteration))
        self.iteration += 1
        return loss

    def _curve_record(self, iteration: int) -> dict:
        record = dict.fromkeys(RECORD_KEYS)
        record.update(iteration=iteration, epoch=self.epoch, loss=self._loss_sum / self._count)
        return record

    def _record(self, iteration: int) -> None:
        measured = dict(self._validate())
        unknown = set(measured) - set(RECORD_KEYS[3:])
        if unknown:
            raise KeyError(f"validate() returned {sorted(unknown)}; known: {RECORD_KEYS[3:]}")
        record = self._curve_record(iteration)
        record.update(measured)
        self.history.append(record)
        self._validated = iteration
        if self.verbose:
            self.bar.write(format_record(record))


def _curve_every(steps_per_epoch: int) -> int:
    """Steps between curve records: about :data:`CURVE_POINTS_PER_EPOCH` per epoch."""
    return max(1, steps_per_epoch // CURVE_POINTS_PER_EPOCH)


def format_record(record: Mapping) -> str:
    """One line per record, e.g. ``Iteration 700, Epoch 1, Loss: 1.8123, Val Accuracy: 41.20``.

    Accuracies are printed as percentages; fields that are None are left out.
    """
    parts = [f"Iteration {record['iteration']}, Epoch {record['epoch'] + 1}"]
    for key, label in _LABELS.items():
        value = record.get(key)
        if value is not None:
            text = f"{100 * value:.2f}" if key.endswith("accuracy") else f"{value:.4f}"
            parts.append(f"{label}: {text}")
    return ", ".join(parts)


_LABELS = {
    "loss": "Loss",
    "accuracy": "Accuracy",
    "val_loss": "Val Loss",
    "val_accuracy": "Val Accuracy",
}
