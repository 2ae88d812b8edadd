"""One exception type for every user-facing failure.

The CLI turns an `EdgeECGError` into one clear line and a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class EdgeECGError(Exception):
    """A problem with the user's input, files or environment, explained in one line."""
