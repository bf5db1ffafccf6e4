"""Size limits checked BEFORE anything from a CIFAR-10 source is decoded.

A doctored copy must not make the reader expand it in memory: every archive
member is checked against its declared size before it is read, every image
against the size in its header before its pixels are decoded, and every
pickle against its nesting depth before a single object is built.

* :data:`MAX_BATCH_BYTES`: one official python batch is 31 MB; 64 MiB is refused.
* :data:`MAX_IMAGE_BYTES`: one 32x32 image is a few KB; 1 MiB is refused.
* :data:`MAX_IMAGES_BYTES`: all images of an image-folder source together.
* :data:`IMAGE_SIZE`: CIFAR-10 images are 32x32, so a header claiming more
  pixels is refused unread (PIL's own ``MAX_IMAGE_PIXELS`` is ~89 megapixels).
* :data:`MAX_PICKLE_DEPTH`: an official batch nests 3 deep (dict, list, int).
"""

from __future__ import annotations

import io
import pickletools
import warnings

from cifar_lab.data.errors import CorruptSourceError

MEGABYTE = 1 << 20  # the one byte unit of the package (limits, messages): 2**20 bytes
MAX_BATCH_BYTES = 64 * MEGABYTE
MAX_IMAGE_BYTES = MEGABYTE
MAX_IMAGES_BYTES = 1024 * MEGABYTE
IMAGE_SIZE = (32, 32)
MAX_PICKLE_DEPTH = 32


def check_member_size(name: str, size: int, limit: int) -> None:
    """Refuse a file or archive member whose (declared) size is over ``limit``.

    Args:
        name: the member's name, for the message.
        size: its size in bytes, from the archive header or the file system.
        limit: the largest accepted size.

    Raises:
        CorruptSourceError: ``size`` is over ``limit``.
    """
    if size > limit:
        raise CorruptSourceError(
            f"{name} is {size:,} bytes, over the {limit:,}-byte limit for this kind of file; "
            "refused before reading it. A real CIFAR-10 copy has no such file: the source is "
            "corrupt or doctored; copy it again from the official site."
        )


def open_image_header(data: bytes, name: str):
    """Open an encoded image lazily and check its header's size before any decoding.

    Args:
        data: the encoded PNG/JPEG bytes.
        name: file name, for messages.

    Returns:
        The lazily opened ``PIL.Image`` (pixels not decoded yet); close it after use.

    Raises:
        CorruptSourceError: the header is unreadable or the image is not 32x32.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():  # the size check below says it more precisely
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except Exception as error:  # PIL raises many types on damaged headers
        raise CorruptSourceError(f"{name}: cannot decode image ({error!r})") from error
    if image.size != IMAGE_SIZE:
        width, height = image.size
        image.close()
        raise CorruptSourceError(
            f"{name}: the image is {width}x{height} pixels; CIFAR-10 images are 32x32. "
            "Refused before decoding it."
        )
    return image


def check_pickle_depth(data: bytes, name: str, limit: int = MAX_PICKLE_DEPTH) -> None:
    """Refuse a pickle nested deeper than ``limit``, by reading its opcodes only.

    The opcode stream is walked with :func:`pickletools.genops`, tracking how
    deep each value on the unpickler's stack is nested; nothing is built.

    Args:
        data: the pickle's bytes.
        name: file name, for messages.
        limit: the deepest nesting accepted.

    Raises:
        CorruptSourceError: the pickle nests deeper than ``limit`` or is not a valid pickle.
    """
    stack: list[int | None] = []  # nesting depth of each stack item; None marks a MARK
    memo: dict[int, int] = {}
    try:
        for opcode, argument, _ in pickletools.genops(io.BytesIO(data)):
            depth = _apply(opcode, argument, stack, memo)
            if depth > limit:
                raise CorruptSourceError(
                    f"{name}: the pickle nests deeper than {limit} levels; an official "
                    "CIFAR-10 batch nests 3. Refused before unpickling it (the file is "
                    "corrupt or doctored)."
                )
    except CorruptSourceError:
        raise
    except Exception as error:  # genops raises ValueError and others on damaged streams
        raise CorruptSourceError(f"{name}: not a readable CIFAR-10 batch ({error!r})") from error


_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}
# opcodes that fill the container below their arguments: it keeps its place and grows deeper
# only by what is put into it
_IN_PLACE = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}


def _apply(opcode, argument, stack: list[int | None], memo: dict[int, int]) -> int:
    """Apply one opcode's stack effect to ``stack``; return the depth it produced."""
    before, after = opcode.stack_before, opcode.stack_after
    if opcode.name == "MARK":
        stack.append(None)
        return 0
    if opcode.name in _MEMO_PUT or opcode.name == "MEMOIZE":
        key = len(memo) if opcode.name == "MEMOIZE" else int(argument)
        memo[key] = _top(stack)
        return memo[key]
    if opcode.name in _MEMO_GET or opcode.name == "DUP":
        stack.append(memo.get(int(argument), 0) if argument is not None else _top(stack))
        return stack[-1]
    consumed = []
    if pickletools.markobject in before:
        while stack and stack[-1] is not None:
            consumed.append(stack.pop())
        if not stack:
            raise ValueError(f"{opcode.name} without a MARK")
        stack.pop()
        below = before.index(pickletools.markobject)
    else:
        below = len(before)
    for _ in range(below):
        if not stack or stack[-1] is None:
            raise ValueError(f"{opcode.name} on an empty stack")
        consumed.append(stack.pop())
    if opcode.name in _IN_PLACE and consumed:  # the container was popped last
        depth = max(consumed[-1], 1 + max(consumed[:-1], default=0))
    else:
        depth = 1 + max(consumed) if consumed else 0
    stack.extend([depth] * len(after))
    return depth


def _top(stack: list[int | None]) -> int:
    if not stack or stack[-1] is None:
        raise ValueError("PUT or DUP on an empty stack")
    return stack[-1]


class ImageBudget:
    """Checks each image's size, and all images' total, before they are read.

    Args:
        source: the folder or archive, for messages.
    """

    def __init__(self, source: str) -> None:
        self.source, self.total = source, 0

    def take(self, name: str, size: int) -> None:
        """Account for one image of ``size`` bytes, refusing it or the total when too large."""
        check_member_size(name, size, MAX_IMAGE_BYTES)
        self.total += size
        if self.total > MAX_IMAGES_BYTES:
            raise CorruptSourceError(
                f"{self.source}: its images add up to more than {MAX_IMAGES_BYTES:,} bytes "
                "(55,000 CIFAR-10 images take about 150 MB); refused before decoding them."
            )
