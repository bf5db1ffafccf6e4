"""A synthetic class for the similarity tests and benchmark: model answers, variants and noise.

Every student cell is the released stub with its ``# YOUR CODE HERE`` lines
replaced by a body, as a student would write it. Bodies are the instructor's
model answer (optionally with a line of the student's own), a rewrite of it
(names renamed, comments changed, spacing changed, independent lines
swapped), one of the hand-written distinct solutions below, or random code
drawn from a seeded generator, different for every student and exercise.
"""

from __future__ import annotations

import ast
import io
import random
import re
import tokenize

from cifar_lab.instructor.release import CODE_PLACEHOLDER

BEGIN, END, HINT = "### BEGIN SOLUTION", "### END SOLUTION", "### HINT:"

# Genuinely different correct solutions, three per exercise for two exercises.
DISTINCT = {
    "standardise_splits": [
        """\
X = X_train.astype(np.float64)
mean = np.array([X[..., c].mean() for c in range(3)])
std = np.sqrt(np.array([((X[..., c] - mean[c]) ** 2).mean() for c in range(3)]))
out = [((S - mean) / std).astype(np.float32) for S in (X_train, X_val, X_test)]
return out[0], out[1], out[2], mean.astype(np.float32), std.astype(np.float32)
""",
        """\
flat = X_train.reshape(-1, X_train.shape[-1]).astype(np.float64)
n = flat.shape[0]
mu = flat.sum(axis=0) / n
sigma = np.sqrt((flat * flat).sum(axis=0) / n - mu * mu)

def scale(images):
    return ((images - mu) / sigma).astype(np.float32)

return scale(X_train), scale(X_val), scale(X_test), mu.astype(np.float32), sigma.astype(np.float32)
""",
        """\
pixels = np.concatenate([X_train[:, :, :, i].ravel()[:, None] for i in range(3)], axis=1)
stats = np.stack([pixels.mean(0), pixels.std(0)])
mean32, std32 = stats.astype(np.float32)
result = []
for split in [X_train, X_val, X_test]:
    result.append(np.divide(np.subtract(split, mean32, dtype=np.float32), std32))
result.extend([mean32, std32])
return tuple(result)
""",
    ],
    "three_layer_fc_init": [
        """\
h1, h2 = hidden_sizes
w1 = tf.Variable(lab.kaiming_normal((3072, h1)))
b1 = tf.Variable(tf.zeros((h1,)))
w2 = tf.Variable(lab.kaiming_normal((h1, h2)))
b2 = tf.Variable(tf.zeros((h2,)))
w3 = tf.Variable(lab.kaiming_normal((h2, 10)))
b3 = tf.Variable(tf.zeros((10,)))
return [w1, b1, w2, b2, w3, b3]
""",
        """\
dims = (3072,) + tuple(hidden_sizes) + (10,)
out = []
i = 0
while i < len(dims) - 1:
    weight = lab.kaiming_normal([dims[i], dims[i + 1]])
    out += [tf.Variable(weight), tf.Variable(np.zeros(dims[i + 1], dtype=np.float32))]
    i += 1
return out
""",
        """\
def layer(n_in, n_out):
    return tf.Variable(lab.kaiming_normal((n_in, n_out))), tf.Variable(tf.zeros([n_out]))

first, second = hidden_sizes
shapes = zip([32 * 32 * 3, first, second], [first, second, 10])
return [v for n_in, n_out in shapes for v in layer(n_in, n_out)]
""",
    ],
}

# Pairs of adjacent, independent lines of a model answer, swapped by the reordering pair.
SWAPS = {
    "standardise_splits": ("mean = X_train.mean(", "std = X_train.std("),
    "two_layer_fc_init": ("w1 = tf.Variable(", "w2 = tf.Variable("),
    "three_layer_fc_init": ("sizes = [32 * 32 * 3", "params = []"),
}

_FUNCTIONS = [f"{m}.{f}" for m in ("np", "tf", "lab", "keras.ops") for f in (
    "mean", "sum", "maximum", "clip", "sqrt", "exp", "log", "concatenate", "stack", "tile",
    "reshape", "transpose", "argmax", "cumsum", "where", "abs", "square", "minimum",
)]  # fmt: skip
_OPERATORS = ["+", "-", "*", "/", "//", "%", "**"]
_COMPARE = ["<", ">", "<=", ">=", "==", "!="]


def model_body(model_answer: str) -> str:
    """The solution block of a model answer, without its markers and hint, dedented."""
    lines = model_answer.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.strip() == BEGIN)
    end = next(i for i, line in enumerate(lines) if line.strip() == END)
    body = [line for line in lines[begin + 1 : end] if not line.strip().startswith(HINT)]
    indent = min(len(line) - len(line.lstrip()) for line in body if line.strip())
    return "\n".join(line[indent:] for line in body) + "\n"


def fill_stub(stub: str, body: str) -> str:
    """The stub with its ``# YOUR CODE HERE`` / ``raise`` lines replaced by ``body``."""
    lines = stub.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == CODE_PLACEHOLDER)
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    filled = [indent + line if line.strip() else "" for line in body.splitlines()]
    return "\n".join([*lines[:at], *filled, *lines[at + 2 :]]) + "\n"


def own_line(seed: int) -> str:
    """A line that makes a body the student's own (not the model answer any more)."""
    return f"assert {seed} > 0, 'checked on {seed}'\n"


def rename_and_recomment(source: str) -> str:
    """Rename every local name and argument, rewrite every comment, change the spacing."""
    tree = ast.parse(source)
    top_level = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)
    }
    local = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    local |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    local -= top_level | {"self"}
    tokens = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        kind, text = token.type, token.string
        if kind == tokenize.NAME and text in local:
            text = f"my_{text.lower()}_var"
        elif kind == tokenize.COMMENT:
            text = "#   " + " ".join(reversed(text.lstrip("# ").split())) + " (my note)"
        tokens.append((kind, text))
    return tokenize.untokenize(tokens)  # compatibility mode: its own spacing


def swap_lines(body: str, first: str, second: str) -> str:
    """Swap the line starting with ``first`` and the one after it (starting with ``second``)."""
    lines = body.splitlines()
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith(first))
    if not lines[at + 1].lstrip().startswith(second):
        raise ValueError(f"line after {first!r} is {lines[at + 1]!r}")
    lines[at], lines[at + 1] = lines[at + 1], lines[at]
    return "\n".join(lines) + "\n"


def noise_body(rng: random.Random, statements: int = 6) -> str:
    """Random code: every student and exercise draws its own."""
    names = ["a", "b"]
    lines = []
    for _ in range(statements):
        new = f"t{len(names)}"
        use = rng.choice(names)
        function, operator = rng.choice(_FUNCTIONS), rng.choice(_OPERATORS)
        form = rng.randrange(4)
        if form == 0:
            lines.append(f"{new} = {function}({use}, {rng.randrange(1000)}) {operator} {use}")
        elif form == 1:
            items = f"{use} {operator} {rng.randrange(1000)}"
            lines.append(f"{new} = [{items} for _ in range({rng.randrange(9)})]")
            lines.append(f"{new} = {function}({new})")
        elif form == 2:
            lines.append(f"for {new} in range({rng.randrange(1000)}):")
            lines.append(f"    {use} = {function}({new} {operator} {use})")
        else:
            lines.append(f"if {use} {rng.choice(_COMPARE)} {rng.randrange(1000)}:")
            lines.append(f"    {new} = {function}({use}, axis={rng.randrange(5)})")
            lines.append("else:")
            lines.append(f"    {new} = {rng.randrange(1000)}")
        names.append(new)
    lines.insert(0, f"a, b = {rng.randrange(1000)}, {rng.randrange(1000)}")
    lines.append(f"return {rng.choice(names)}")
    return "\n".join(lines) + "\n"


def strip_markers(model_answer: str) -> str:
    """The model answer as a student would hand it in: no solution markers, no hint."""
    return re.sub(rf"^\s*(?:{BEGIN}|{END}|{HINT}.*)\n", "", model_answer, flags=re.M)


CLASS_SIZE = 40
RENAMED = ("training_step", "three_layer_fc", "build_network")  # renamed + comments changed
REORDERED = tuple(SWAPS)  # independent lines swapped
ONE_EXERCISE = "optimizer_search"  # the only exercise this pair shares
MODEL_PASTE = "regularisation_search"  # both paste the model answer


def noise_class(references, size: int, seed: int = 0) -> dict[str, dict[str, str]]:
    """Every student writes their own random code for every exercise."""
    rng = random.Random(seed)
    return {
        f"s{n:02d}": {g: fill_stub(r.stub, noise_body(rng)) for g, r in references.items()}
        for n in range(size)
    }


def planted_class(references) -> tuple[dict[str, dict[str, str]], set[tuple[str, str, str]]]:
    """The synthetic class of :data:`CLASS_SIZE` students with planted pairs.

    Args:
        references: grade_id -> :class:`~cifar_lab.instructor.similarity.Reference`
            (the course's stubs and model answers).

    Returns:
        (student -> grade_id -> cell source, the planted pairs {(a, b, grade_id)}).
    """
    sources = noise_class(references, CLASS_SIZE - 11)  # + 8 paired + 3 distinct
    planted = set()

    def body(grade_id: str, seed: int) -> str:
        return own_line(seed) + model_body(references[grade_id].model_answer)

    def pair(a: str, b: str, exercises, second) -> None:
        sources[a], sources[b] = {}, {}
        rng = random.Random(a)
        for grade_id in references:  # their own random code elsewhere
            sources[a][grade_id] = fill_stub(references[grade_id].stub, noise_body(rng))
            sources[b][grade_id] = fill_stub(references[grade_id].stub, noise_body(rng))
        for seed, grade_id in enumerate(exercises):
            sources[a][grade_id] = fill_stub(references[grade_id].stub, body(grade_id, seed))
            sources[b][grade_id] = second(grade_id, sources[a][grade_id], seed)
            planted.add((a, b, grade_id))

    pair("rename_a", "rename_b", RENAMED, lambda g, code, seed: rename_and_recomment(code))
    pair(
        "reorder_a",
        "reorder_b",
        REORDERED,
        lambda g, code, seed: fill_stub(references[g].stub, swap_lines(body(g, seed), *SWAPS[g])),
    )
    pair("one_a", "one_b", [ONE_EXERCISE], lambda g, code, seed: code)
    pair("model_a", "model_b", [], None)
    for student in ("model_a", "model_b"):
        sources[student][MODEL_PASTE] = strip_markers(references[MODEL_PASTE].model_answer)
    planted.add(("model_a", "model_b", MODEL_PASTE))
    for grade_id, bodies in DISTINCT.items():
        for number, solution in enumerate(bodies):
            student = f"distinct_{number}"
            sources.setdefault(student, dict(noise_class(references, 1, seed=number + 99)["s00"]))
            sources[student][grade_id] = fill_stub(references[grade_id].stub, solution)
    return sources, planted
