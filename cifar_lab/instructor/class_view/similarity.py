"""Similar solutions across a class: pairs per exercise through an inverted index of fingerprints.

Each exercise cell (found by its nbgrader ``grade_id``) is compared only with
the same exercise of the other students. Cells become winnowed fingerprints
of their normalised code (:mod:`~cifar_lab.instructor.class_view.fingerprints`:
no comments, docstrings, names or formatting; independent lines in one order).
Then:

* **what everyone shares is left out**: fingerprints of the released stub,
  fingerprints held by most of the class, and cells left with fewer than
  ``min_fingerprints`` fingerprints (too short to say anything);
* **pairs** come from an inverted index fingerprint -> students: only
  students sharing a fingerprint are ever compared, never every pair of texts.

Besides pairs, the pass reports cells whose normalised code equals the
instructor's model answer ("matches the model answer": a leaked answer is a
problem of its own), identical executed outputs of a random process (the same
training curve to the last digit) and byte-identical model files.

The report says "similar", never more: deciding is the instructor's job. The
input is plain data (``{student: {grade_id: source}}``, see
:mod:`~cifar_lab.instructor.class_view.sources`), so it is tested without grading.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from collections import defaultdict
from dataclasses import dataclass, field

from cifar_lab.instructor.class_view.fingerprints import fingerprints, normalise, normalised_text

_FLOAT = re.compile(r"-?\d+\.\d{4,}(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class SimilaritySettings:
    """How similar is similar.

    Attributes:
        k: tokens per hashed k-gram.
        window: winnowing window (hashes); a common run of ``k + window - 1``
            tokens is always detected.
        threshold: report a pair whose similarity (shared fingerprints over
            the mean of both counts, 0..1) is at least this.
        min_fingerprints: ignore a cell left with fewer fingerprints once the
            stub's are removed (code shorter than a floor).
        common_fraction: ignore a fingerprint, an output or a model held by more
            than this fraction of the students (and by more than ``common_students``).
        common_students: see ``common_fraction`` (small classes keep their pairs).
        max_blocks: matching blocks kept per pair, for the report.
        max_detailed: the most similar pairs that get their matching blocks (the
            report shows no more; the others are listed without lines).
        max_chars: a longer cell is not compared (listed as skipped): parsing a
            hostile megabyte of code must not stall the batch.
    """

    k: int = 8
    window: int = 6
    threshold: float = 0.5
    min_fingerprints: int = 4
    common_fraction: float = 0.5
    common_students: int = 10
    max_blocks: int = 12
    max_detailed: int = 200
    max_chars: int = 50_000

    def __post_init__(self) -> None:
        from cifar_lab.checks import check_int, check_number

        check_int("k", self.k, minimum=1)
        check_int("window", self.window, minimum=1)
        check_number("threshold", self.threshold, minimum=0, maximum=1)
        check_int("min_fingerprints", self.min_fingerprints, minimum=1)
        check_number("common_fraction", self.common_fraction, minimum=0, maximum=1)
        check_int("common_students", self.common_students, minimum=2)
        check_int("max_blocks", self.max_blocks, minimum=1)
        check_int("max_detailed", self.max_detailed, minimum=0)
        check_int("max_chars", self.max_chars, minimum=1)


@dataclass(frozen=True)
class Reference:
    """What the instructor released and expects for one exercise.

    Attributes:
        stub: the released cell (its fingerprints are everyone's).
        model_answer: the instructor's cell ("" when unknown).
    """

    stub: str
    model_answer: str = ""


@dataclass(frozen=True)
class SimilarPair:
    """Two students whose code for one exercise is similar.

    Attributes:
        grade_id: the exercise.
        student_a, student_b: the two students (``student_a < student_b``).
        similarity: shared fingerprints over the mean fingerprint count, 0..1.
        shared: how many fingerprints they share.
        blocks: matching line ranges ``(a_first, a_last, b_first, b_last)``, 1-based,
            in ``student_a``'s order (empty beyond ``max_detailed`` pairs).
        model_answer: both cells match the model answer.
    """

    grade_id: str
    student_a: str
    student_b: str
    similarity: float
    shared: int
    blocks: tuple[tuple[int, int, int, int], ...]
    model_answer: bool = False


@dataclass(frozen=True)
class SameGroup:
    """Students with an identical output of one cell, or an identical model file.

    Attributes:
        kind: ``"output"`` or ``"model"``.
        where: the cell (``notebook:cell``) or the model file's name.
        digest: sha256 of the shared output numbers or of the file.
        students: the students, sorted.
    """

    kind: str
    where: str
    digest: str
    students: tuple[str, ...]


@dataclass(frozen=True)
class Similarity:
    """The result of one similarity pass over a class.

    Attributes:
        pairs: similar pairs, most similar first.
        model_answer: grade_id -> students whose cell matches the model answer.
        same_outputs: groups with identical executed outputs of a random process.
        same_models: groups with byte-identical model files.
        sources: the compared sources, for showing matching lines.
        skipped: grade_id -> students whose cell was the stub, too short or too long.
    """

    pairs: tuple[SimilarPair, ...] = ()
    model_answer: dict[str, tuple[str, ...]] = field(default_factory=dict)
    same_outputs: tuple[SameGroup, ...] = ()
    same_models: tuple[SameGroup, ...] = ()
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _common_limit(students: int, settings: SimilaritySettings) -> float:
    """More students than this sharing something makes it common, not similar."""
    return max(settings.common_students, settings.common_fraction * students)


def _blocks(
    shared: list[int], a: dict[int, tuple[int, int]], b: dict[int, tuple[int, int]], most: int
) -> tuple[tuple[int, int, int, int], ...]:
    """Merge the line ranges of shared fingerprints into side-by-side blocks."""
    spans = sorted((*a[h], *b[h]) for h in shared)
    merged: list[list[int]] = []
    for a0, a1, b0, b1 in spans:
        last = merged[-1] if merged else None
        if last and a0 <= last[1] + 1 and last[2] - 1 <= b0 <= last[3] + 1:
            last[1], last[3] = max(last[1], a1), max(last[3], b1)
            last[2] = min(last[2], b0)
        else:
            merged.append([a0, a1, b0, b1])
    return tuple(tuple(block) for block in merged[:most])


def _exercise_pairs(
    grade_id: str,
    prints: dict[str, dict[int, tuple[int, int]]],
    matches_model: set[str],
    class_size: int,
    settings: SimilaritySettings,
) -> list[tuple[SimilarPair, list[int]]]:
    """Similar pairs of one exercise (without blocks yet) and the fingerprints they share.

    Only students that share a fingerprint are ever counted, through the
    inverted index fingerprint -> students.
    """
    index: dict[int, list[str]] = defaultdict(list)
    for student, found in prints.items():
        for value in found:
            index[value].append(student)
    limit = _common_limit(class_size, settings)
    counts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for value, holders in index.items():
        if 1 < len(holders) <= limit:
            for pair in itertools.combinations(sorted(holders), 2):
                counts[pair].append(value)
    pairs = []
    for (a, b), shared in counts.items():
        similarity = 2 * len(shared) / (len(prints[a]) + len(prints[b]))
        if similarity >= settings.threshold:
            both = a in matches_model and b in matches_model
            pair = SimilarPair(grade_id, a, b, round(similarity, 4), len(shared), (), both)
            pairs.append((pair, shared))
    return pairs


def _same_groups(kind: str, digests: dict[tuple[str, str], list[str]], limit: float) -> list:
    groups = []
    for (where, digest), students in sorted(digests.items()):
        if 1 < len(students) <= limit:
            groups.append(SameGroup(kind, where, digest, tuple(sorted(students))))
    return groups


def output_digest(text: str, min_numbers: int = 3) -> str | None:
    """sha256 of the precise numbers in an output (a training curve), or None if too few.

    Args:
        text: an executed cell's output text.
        min_numbers: fewest numbers with at least four decimals that make an output
            the trace of a random process (a loss or accuracy curve).

    Returns:
        The digest of those numbers in order, or None.
    """
    numbers = _FLOAT.findall(text)
    if len(numbers) < min_numbers:
        return None
    return hashlib.sha256(" ".join(numbers).encode("ascii")).hexdigest()


def find_similar(
    sources: dict[str, dict[str, str]],
    references: dict[str, Reference],
    *,
    outputs: dict[str, dict[str, str]] | None = None,
    model_digests: dict[str, str] | None = None,
    settings: SimilaritySettings | None = None,
) -> Similarity:
    """Find similar solutions, identical random outputs and identical models in a class.

    Args:
        sources: student -> grade_id -> the exercise cell's source.
        references: grade_id -> its stub and model answer; only these exercises are compared.
        outputs: student -> cell name -> the cell's executed output text.
        model_digests: student -> sha256 of the saved model file.
        settings: thresholds (None: the defaults).

    Returns:
        The :class:`Similarity` of the class.
    """
    settings = settings or SimilaritySettings()
    students = sorted(sources)
    candidates: list[tuple[SimilarPair, list[int]]] = []
    prints_of: dict[str, dict[str, dict[int, tuple[int, int]]]] = {}
    model_answer: dict[str, tuple[str, ...]] = {}
    skipped: dict[str, tuple[str, ...]] = {}
    for grade_id, reference in sorted(references.items()):
        # every k-gram of the stub, not only its winnowed ones: a student's window may pick another
        stub_prints = fingerprints(normalise(reference.stub), settings.k, 1)
        stub_text = normalised_text(reference.stub)
        model_text = normalised_text(reference.model_answer) if reference.model_answer else None
        prints, matches, short = {}, set(), []
        for student in students:
            source = sources[student].get(grade_id)
            if not isinstance(source, str):
                continue
            if len(source) > settings.max_chars:
                short.append(student)
                continue
            tokens = normalise(source)
            text = " ".join(token for token, _, _ in tokens)
            if model_text is not None and text == model_text:
                matches.add(student)
            found = fingerprints(tokens, settings.k, settings.window)
            found = {h: lines for h, lines in found.items() if h not in stub_prints}
            if text == stub_text or len(found) < settings.min_fingerprints:
                short.append(student)
                continue
            prints[student] = found
        candidates += _exercise_pairs(grade_id, prints, matches, len(students), settings)
        prints_of[grade_id] = prints
        if matches:
            model_answer[grade_id] = tuple(sorted(matches))
        if short:
            skipped[grade_id] = tuple(short)
    limit = _common_limit(len(students), settings)
    same_outputs: dict[tuple[str, str], list[str]] = defaultdict(list)
    for student, cells in (outputs or {}).items():
        for where, text in cells.items():
            if (digest := output_digest(text)) is not None:
                same_outputs[(where, digest)].append(student)
    same_models: dict[tuple[str, str], list[str]] = defaultdict(list)
    for student, digest in (model_digests or {}).items():
        same_models[("model", digest)].append(student)
    candidates.sort(
        key=lambda c: (-c[0].similarity, c[0].grade_id, c[0].student_a, c[0].student_b)
    )
    pairs = []
    for rank, (pair, shared) in enumerate(candidates):
        if rank < settings.max_detailed:  # matching lines for the pairs the report shows
            prints = prints_of[pair.grade_id]
            blocks = _blocks(
                shared, prints[pair.student_a], prints[pair.student_b], settings.max_blocks
            )
            pair = dataclasses.replace(pair, blocks=blocks)
        pairs.append(pair)
    return Similarity(
        pairs=tuple(pairs),
        model_answer=model_answer,
        same_outputs=tuple(_same_groups("output", same_outputs, limit)),
        same_models=tuple(_same_groups("model", same_models, limit)),
        sources=sources,
        skipped=skipped,
    )
