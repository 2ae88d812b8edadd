"""One exception type for every user-facing failure, and one way to quote a foreign one.

The CLI turns an `EdgeECGError` into one clear line and a non-zero exit;
anything else is a bug and keeps its traceback.
"""

MAX_REASON_CHARS = 200  # ONNX Runtime, TensorRT and onnx can put a whole graph dump in one message


class EdgeECGError(Exception):
    """A problem with the user's input, files or environment, explained in one line."""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of a library's exception (at most 200 characters), else its type name.

    For wrapping ORT/onnx/TensorRT/torch errors into an `EdgeECGError` that stays one line.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:MAX_REASON_CHARS] if lines else type(exc).__name__
