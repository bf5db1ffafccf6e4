"""A rung of the time-to-accuracy ladder, as a recipe for a network you build yourself.

``python -m cifar_lab train-best --recipe NAME`` trains a rung of
:data:`cifar_lab.tuning.recipes.RECIPES` with the library's network. Part V's
students train the same recipes with their own ``build_network``
(``train_config(..., build=build_network)``): :func:`rung_config` gives the
rung's training recipe (optimiser, schedule, label smoothing, augmentation,
batch size, epochs), with the network of the student's config when one is given.
"""

from __future__ import annotations

from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.recipes import RECIPES

# what build_network decides; every other field is how the network is trained
NETWORK_FIELDS = (
    "hidden_sizes", "activation", "maxout_pieces", "initializer", "batch_norm", "dropout", "l2",
)  # fmt: skip


def rung_config(
    rung: str,
    *,
    network: MLPConfig | None = None,
    epochs: int | None = None,
    num_train: int | None = None,
) -> MLPConfig:
    """The recipe of ladder rung ``rung`` for a network built by your own ``build=`` function.

    A ``build=`` network receives standardised images and builds its own float32
    layers, so the recipe drops ``train-best``'s ZCA whitening (which needs the
    library's network) and trains in float32. A rung that averages several
    networks (``xl``, see :data:`cifar_lab.tuning.recipes.MEMBERS`) gives the
    recipe of one of them.

    Args:
        rung: a name in :data:`RECIPES`, e.g. ``"fast"`` or ``"medium"``.
        network: a config whose network fields (:data:`NETWORK_FIELDS`: hidden
            sizes, activation, initialiser, batch norm, dropout, L2) replace the
            rung's; None keeps the rung's own network.
        epochs: fewer (or more) epochs than the rung's, e.g. for the quick
            profile; the warm-up shrinks in proportion. None keeps the rung's.
        num_train: train on this many training images (None: all of them).

    Returns:
        An :class:`MLPConfig` with ``whitening="none"`` and ``precision="float32"``.
    """
    if not isinstance(rung, str) or rung not in RECIPES:
        raise ValueError(f"unknown rung {rung!r}; choose from {sorted(RECIPES)}")
    if network is not None and not isinstance(network, MLPConfig):
        raise TypeError(f"network must be an MLPConfig or None, got {type(network).__name__}")
    recipe = RECIPES[rung]
    changes: dict = {
        "whitening": "none",
        "augment_whitened": False,
        "precision": "float32",
        "num_train": num_train,
    }
    if network is not None:
        changes.update({field: getattr(network, field) for field in NETWORK_FIELDS})
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive int or None, got {epochs!r}")
        changes["epochs"] = epochs
        changes["warmup_epochs"] = recipe.warmup_epochs * min(1.0, epochs / recipe.epochs)
    return recipe.replace(**changes)
