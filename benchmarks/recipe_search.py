"""Short recipe search on real CIFAR-10: validation accuracy and wall time per candidate.

Each named candidate is an :class:`cifar_lab.tuning.config.MLPConfig`; results are
appended as JSON lines to ``outputs/recipe_search.jsonl`` (validation only:
the test split is never touched here)::

    CIFAR_LAB_CACHE=/tmp/cl_cache python benchmarks/recipe_search.py pca512_flip [...]
    python benchmarks/recipe_search.py --list

Measured on the shared 2-core CPU while other jobs ran (load average 3-4), 49,000
training / 1,000 validation images, all on top of ``recipe.BASELINE`` (2048-1024-512,
BN before ReLU, dropout 0.3, AdamW 1e-3 wd 1e-4, cosine, label smoothing 0.1, flips,
batch 256, no XLA):

    candidate          change                           epochs  wall    val acc
    raw_6ep            none                             6       279 s   0.547
    pca1024_6ep        PCA whitening, 1024 comp, eps .1 6       241 s   0.497
    translate2_20ep    +-2 px translations, 1 ep warm-up 20     889 s   0.581 (flip TTA 0.578)

Second round (2026-11-27, same split, CPU with AMX): bfloat16 matmuls at batch 1024 train
about 2x more images per second than float32 at batch 256 (benchmarks: 13 vs 22 s per
epoch of pure training), so many more epochs fit in the budget. On top of ``BF16_1024``
(BASELINE + mixed_bfloat16, batch 1024, learning rate 2e-3, 2-epoch warm-up, flips,
+-4 px translations):

    candidate              change                        epochs  wall    val acc
    bf16_t4_60ep           none (dropout 0.3)            60      681 s   0.613
    bf16_t4_drop01_60ep    dropout 0.1                   60      679 s   0.658
    bf16_t4_drop01_zca60   dropout 0.1, ZCA (eps 0.1)    60      907 s   0.676

Averaging the last two models' probabilities gives 0.694 on validation (+1.8 points over
the better one). Train accuracy (augmented, with dropout) ends near validation accuracy
in all three, so the networks still underfit: lower dropout and whitening help most.

Third round (2026-11-29, the time-to-accuracy ladder of issue 15; 2-core AMD EPYC with
avx512_bf16, no AMX, otherwise idle; all on top of ``recipes.BEST``, bfloat16, batch 1024,
about 9.2 s per epoch). Each was trained with ``train_best`` on the 49k/1k split (the
script below, which also prints test accuracy; the choice used validation only), wall
time of the whole call:

    candidate             change                         epochs  wall      val acc
    ladder_best_18        none                           18      2.8 min   0.593
    ladder_fast           dropout 0, +-2 px              16      2.5 min   0.652
    ladder_medium         dropout 0.05, +-3 px           44      6.7 min   0.678
    ladder_best_120       none                           120     17.5 min  0.716
    ladder_long           dropout 0.15                   340     50.9 min  0.745

    TF_CPP_MIN_LOG_LEVEL=3 python -c "from cifar_lab.tuning.recipes import BEST, train_best; \
        train_best('outputs/try', recipe=BEST.replace(dropout=0.0, translate=2, epochs=16), \
        source='../shared/data/cifar10-jpeg.tgz')"

The short runs underfit (training accuracy below validation), so they want less
regularisation; ``fast`` and ``medium`` in ``RECIPES`` are the two winners. For ``best``,
120 epochs beat the 80 it had (0.693), so ``BEST`` now trains 120. ``long`` is the one
candidate sized to the hour: BEST's 120-epoch run still gained on validation while its
training accuracy pulled 6 points ahead, so 340 epochs with more dropout (its wall time is
that of the whole ``train-best --recipe long`` command, benchmarks/time_to_accuracy.py).
It reached 0.745 validation: its curve stayed at 0.70-0.73 from epoch 140 to 240 while
training accuracy rose from 0.77 to 0.85, so more epochs alone will not reach 0.75.

Fourth round (2026-12-05, issue 28; 2-core AMD EPYC with avx512_bf16, no AMX, otherwise
idle; wall is train_config's, whitening fit included, without loading and evaluation).
``augment_whitened`` whitens the training images once and flips and shifts the whitened
images, so the fixed 3072x3072 ZCA layer leaves the train step:

    candidate           change                               epochs  wall    val (flip TTA)
    ladder_fast         none (the third round's fast)        16      119 s   0.640 (0.654)
    fast_whitened       augment_whitened                     16       92 s   0.634 (0.659)
    fast_whitened_14    augment_whitened                     14       81 s   0.630 (0.645)
    fast_raw            no whitening at all                  16       81 s   0.609 (0.615)

Whitening the images once costs nothing measurable in accuracy and makes the step 1.3x
cheaper (about 9,500 against 6,600 images/s); dropping whitening is as fast and 2.5-3
points worse. ``fast`` is now fast_whitened_14 (room under 2 minutes for a slower run).
Weight decay, in the overfitting regime in miniature (10,000 images, 100 epochs,
``long``'s dropout 0.15, whitened): Keras' AdamW multiplies the decay by the learning
rate, so the recipes' 1e-4 shrank weights by 2e-7 a step, nothing over a run:

    overfit_10k         weight decay 1e-4                     100     124 s   0.590 (0.609)
    overfit_10k_wd05    weight decay 0.05                     100     123 s   0.601 (0.603)
    overfit_10k_wd09    0.9: the total decay 0.05 gets in     100     125 s   0.613 (0.618)
                        long's 16,000 steps

+2.3 points single pass (+0.9 with flip TTA), within two standard errors of a difference
on 1,000 images, so a lead, not a result. Followed up on the whole rung, through the real
command (``python benchmarks/time_to_accuracy.py --rungs long --precisions mixed_bfloat16``,
rows in ``benchmarks/ladder_runs.json``):

    long, third round   340 epochs, decay 1e-4              340   50.9 min  0.745 (flip TTA)
    long_wd05           augment_whitened, decay 0.05        340   45.7 min  0.774 (0.756 single)

+2.9 points of validation, with training accuracy at 86% against 76% single-pass
validation at the end: still overfitting, so ``long`` decays harder (0.1) over 300 epochs.
Not tried this round: mixup and deformations on the CPU (on the GPU, stop 34, each cost
validation at 150 epochs, gpu_lever_search.py), distillation, wider blocks.

Fifth round (2026-12-05, issue 28; a 2-core AMD EPYC with AVX2 only, no AVX-512: about
1,400 images/s in float32, 3.5x slower than the fourth round's machine, so no `long` or
`xl` run fitted the session). The laptop view (float32; wall is train_config's):

    laptop_narrow_8     1024-512-256, 8 epochs                  8     150 s   0.574 (0.593)
    laptop_8            8 epochs                                8     309 s   0.587 (0.607)
    laptop_narrow       1024-512-256                            14    267 s   0.610 (0.628)
    fast (whole command, float32, train-best)                   14    8.2 min 0.645 flip TTA

A half-width network keeps most of `fast`'s accuracy (-1.7 points) in half the time;
nothing here reaches 60% in 2 minutes on this CPU.

Ensembles (the `xl` lever), members differing only in their seed, accuracies with flip TTA
(single pass in brackets):

    overfit_10k_wd09_x3  3 x the miniature (float32)      100 x 3  2595 s  0.637 (0.638)
                         members 0.623 0.628 0.621 (0.609 0.614 0.604)
    fast x 3             train-best --recipe fast --members 3 --precision float32, 27.6 min:
                         val 0.668, test 0.644; members val 0.645 0.659 0.658, test
                         0.635 0.632 0.635

Averaging three adds 0.9-1.4 points with flip TTA (2.4-2.9 single pass) in both regimes,
underfit and overfit. `xl` needs 2.8 points over `long`'s 75.8%, so three 250-epoch
`long` networks should land near 77%, short of 78.6%: a forecast, not a measurement.

Sixth round (2026-12-06, issue 28, the same AVX2-only machine): distillation
(:mod:`cifar_lab.tuning.distillation`), to get the ensemble's gain into one network.
``overfit_10k_wd09_distill`` trains the three networks of ``overfit_10k_wd09_x3`` again,
then a student with the first one's seed, network and schedule on targets of 0.25 x the
label + 0.75 x the teachers' mean probabilities over each image and its mirror:

    teachers together   3 x the miniature, averaged            100 x 3  0.638 (0.637)
    teacher 1 alone     seed 0, the labels                     100      0.609 (0.623)
    student             seed 0, the soft targets               100      0.608 (0.617)

(single pass; flip TTA in brackets; 3542 s in all, the student 879 s). It did not help:
the student matched its first teacher single-pass (-0.1) and lost 0.6 with flip TTA,
keeping none of the ensemble's +1.4. Its training agreement with the targets ended at 67%
against validation 61%, so the soft targets did not stop the overfitting either. Not
followed up on a rung: a rung's minutes would have to pay for the teachers too, which
leaves `long`'s 45 no room, and for `xl` the averaged networks are already the model.

Seventh round (2026-12-06, the same machine, idle): 60% in two minutes on the laptop CPU?
Narrower first layers (the 3072 x width product is most of a step) for about 100 s of
training, float32, a one-epoch warm-up (wall is train_config's, which includes fitting
ZCA and whitening the training images, about 15 s; images/s over the whole call):

    laptop_narrow_5     1024-512-256                         5     92 s   0.514 (0.534)  2,700/s
    laptop_768_7        768-384-192                          7     82 s   0.526 (0.555)  4,200/s
    laptop_512_9        512-512-256                          9     97 s   0.543 (0.570)  4,600/s
    laptop_1024_512_6   1024-512                             6    109 s   0.541 (0.563)  2,700/s

None comes near: the best, 57.0% with flip TTA, is 3 points short in 97 s of training,
before loading the data. A 1024 x 3072 x 1024 matmul runs at about 150 GFLOP/s here
(TensorFlow, both cores), and training reaches about half of that, so no cheap 2x is
left in the step either. On this CPU 60% costs about 150 s of training (fifth round:
laptop_narrow_8, 59.3%), so the two-minute target stays a target for CPUs with bfloat16
units (`fast`: 1.6 min, 63.9% test); this CPU needs about 150 s of training for it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.recipes import BASELINE, BEST, FAST

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tgz"

_PCA = {"whitening": "pca"}
CANDIDATES: dict[str, MLPConfig] = {
    # 6-epoch proxies on the full training split
    "raw_6ep": BASELINE.replace(epochs=6),
    "pca1024_6ep": BASELINE.replace(epochs=6, **_PCA, whitening_components=1024),
    # the plain strong recipe, 12 epochs
    "baseline_12ep": BASELINE,
    # longer, with small translations and a one-epoch warm-up
    "translate2_20ep": BASELINE.replace(epochs=20, translate=2, warmup_epochs=1.0),
}
BF16_1024 = BASELINE.replace(
    precision="mixed_bfloat16", batch_size=1024, learning_rate=2e-3, warmup_epochs=2.0,
    translate=4, epochs=60,
)  # fmt: skip
CANDIDATES |= {
    "bf16_t4_60ep": BF16_1024,
    "bf16_t4_drop01_60ep": BF16_1024.replace(dropout=0.1),
    "bf16_t4_drop01_zca60": BF16_1024.replace(dropout=0.1, whitening="zca"),
}
# the third round's recipes as they were then (BEST before augment_whitened)
BEST_3 = BEST.replace(augment_whitened=False, weight_decay=1e-4)
FAST_3 = BEST_3.replace(dropout=0.0, translate=2, epochs=16)
MEDIUM_3 = BEST_3.replace(dropout=0.05, translate=3, epochs=44)
LONG_3 = BEST_3.replace(dropout=0.15, epochs=340)
CANDIDATES |= {  # the ladder (third round)
    "ladder_best_18": BEST_3.replace(epochs=18),
    "ladder_fast": FAST_3,
    "ladder_medium": MEDIUM_3,
    "ladder_best_120": BEST_3.replace(epochs=120),
    "ladder_long": LONG_3,
}
CANDIDATES |= {  # the higher ladder (fourth round, issue 28)
    "fast_whitened": FAST_3.replace(augment_whitened=True),
    "fast_whitened_14": FAST_3.replace(augment_whitened=True, epochs=14),
    "fast_raw": FAST_3.replace(whitening="none"),
    # the overfitting regime in miniature: 10,000 images for 100 epochs
    "overfit_10k": LONG_3.replace(augment_whitened=True, num_train=10_000, epochs=100),
    "overfit_10k_wd05": LONG_3.replace(
        augment_whitened=True, num_train=10_000, epochs=100, weight_decay=0.05
    ),
    # the same decay over the run as 0.05 gets in `long`'s 16,000 steps (900 steps here)
    "overfit_10k_wd09": LONG_3.replace(
        augment_whitened=True, num_train=10_000, epochs=100, weight_decay=0.9
    ),
}

# Fifth round: the laptop view. On a 2-core CPU with AVX2 only (no AVX-512, no bfloat16
# units, as most laptops), `fast` trains in float32 at about 1,400 images/s, so its 14
# epochs take 8.5 minutes; these ask how close to 60% a quarter of that gets.
LAPTOP = FAST.replace(precision="float32")
CANDIDATES |= {
    "laptop_fast": LAPTOP,
    "laptop_8": LAPTOP.replace(epochs=8),
    "laptop_narrow": LAPTOP.replace(hidden_sizes=(1024, 512, 256)),
    "laptop_narrow_8": LAPTOP.replace(hidden_sizes=(1024, 512, 256), epochs=8),
}
# Ensembles (the `xl` lever): does averaging three networks pay where `long` lives, in the
# overfitting regime? Its miniature (10,000 images, 100 epochs, decay 0.9) in float32, as
# three members with seeds 0, 1, 2; and at `fast`'s scale, where networks underfit, through
# the whole command (train-best --recipe fast --members 3).
CANDIDATES |= {
    "overfit_10k_wd09_x3": LONG_3.replace(
        augment_whitened=True,
        num_train=10_000,
        epochs=100,
        weight_decay=0.9,
        precision="float32",
    ),
}
# Distillation (sixth round): the same three networks teach a fourth with the first one's
# seed, on targets that mix the label (weight 0.25) with the teachers' mean probabilities
# over each image and its mirror; the student is the same network and schedule as its
# first teacher, so the two differ only in what they were trained on.
CANDIDATES["overfit_10k_wd09_distill"] = CANDIDATES["overfit_10k_wd09_x3"]
MEMBERS = {  # candidates that train and average several networks
    "overfit_10k_wd09_x3": 3,
    "overfit_10k_wd09_distill": 3,
}
DISTILL = {"overfit_10k_wd09_distill": 0.25}  # the label's weight in the student's targets
# Seventh round: 60% in two minutes on the AVX2 laptop CPU, where `fast` takes 8.5. The first
# layer (3072 x width) is most of a step's work, so narrower first layers buy epochs; a
# one-epoch warm-up suits runs this short.
SHORT = LAPTOP.replace(warmup_epochs=1.0)
CANDIDATES |= {
    "laptop_narrow_5": SHORT.replace(hidden_sizes=(1024, 512, 256), epochs=5),
    "laptop_768_7": SHORT.replace(hidden_sizes=(768, 384, 192), epochs=7),
    "laptop_512_9": SHORT.replace(hidden_sizes=(512, 512, 256), epochs=9),
    "laptop_1024_512_6": SHORT.replace(hidden_sizes=(1024, 512), epochs=6),
}


def run(name: str, out: Path) -> dict:
    """Train one candidate on the real training split and record its validation curve."""
    from cifar_lab.data.splits import load_cifar10
    from cifar_lab.metrics import accuracy
    from cifar_lab.tuning.distillation import distill
    from cifar_lab.tuning.ensembles import (
        average_probabilities,
        predict_probabilities,
        train_ensemble,
    )
    from cifar_lab.tuning.train import training_subset

    splits = load_cifar10(49_000, 1_000, 0, source=str(SOURCE), verbose=False)
    config = CANDIDATES[name]
    print(f"== {name}: {config}", flush=True)
    # the subset is drawn once, so that an ensemble's members differ only in their seed
    # (train_config would draw each member's own subset: bagging, not what `xl` does)
    X_fit, y_fit = training_subset(splits.X_train, splits.y_train, config.num_train, config.seed)
    trained = train_ensemble(
        config.replace(num_train=None), X_fit, y_fit, splits.X_val, splits.y_val,
        members=MEMBERS.get(name, 1),
    )  # fmt: skip

    def views(model) -> tuple[np.ndarray, np.ndarray]:  # probabilities: image, mirror
        return (
            predict_probabilities(model, splits.X_val),
            predict_probabilities(model, splits.X_val[:, :, ::-1]),
        )

    def scores(pairs: list) -> dict[str, float]:  # one network, or the mean of several
        plain = [pair[0] for pair in pairs]
        both = plain + [pair[1] for pair in pairs]
        return {
            "val_accuracy": accuracy(splits.y_val, average_probabilities(plain)),
            "val_accuracy_flip_tta": accuracy(splits.y_val, average_probabilities(both)),
        }

    members = [views(member.model) for member in trained]
    record = {"name": name, **scores(members)}
    result, seconds = trained[0], sum(member.seconds for member in trained)
    if name in DISTILL:  # the members teach a student; the record's accuracy is its own
        result = distill(
            config.replace(num_train=None), [member.model for member in trained],
            X_fit, y_fit, splits.X_val, splits.y_val, label_weight=DISTILL[name],
        )  # fmt: skip
        seconds += result.seconds
        record = {
            "name": name, **scores([views(result.model)]), "label_weight": DISTILL[name],
            "student_seconds": round(result.seconds, 1),
            **{f"teachers_{key}": value for key, value in scores(members).items()},
        }  # fmt: skip
    record |= {
        "best_val_accuracy": max(r["val_accuracy"] for r in result.history),
        "seconds": round(seconds, 1),
        "epochs": config.epochs,
        "num_train": config.num_train,
        "history": list(result.history),
        "config": config.to_dict(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if len(members) > 1:  # each member alone, so the ensemble's gain is measured
        record["members"] = [scores([pair]) for pair in members]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(
        f"== {name}: val_acc {record['val_accuracy']:.4f} "
        f"(flip TTA {record['val_accuracy_flip_tta']:.4f}) in {record['seconds']:.0f} s"
        + "".join(
            f"; member {i}: {m['val_accuracy']:.4f} ({m['val_accuracy_flip_tta']:.4f})"
            for i, m in enumerate(record.get("members", []), start=1)
        )
        + (
            f"; teachers together: {record['teachers_val_accuracy']:.4f} "
            f"({record['teachers_val_accuracy_flip_tta']:.4f})"
            if "teachers_val_accuracy" in record
            else ""
        )
    )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="candidates to run")
    parser.add_argument("--list", action="store_true", help="list candidates and exit")
    parser.add_argument("--out", type=Path, default=Path("outputs/recipe_search.jsonl"))
    args = parser.parse_args()
    if args.list or not args.names:
        print("\n".join(CANDIDATES))
        return
    for name in args.names:
        run(name, args.out)


if __name__ == "__main__":
    main()
