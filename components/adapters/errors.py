"""What the adapters put after the colon of their one-line error messages."""

from __future__ import annotations


def one_line(error: BaseException) -> str:
    """Return the first non-empty line of an exception's message, or its type name when the message is empty.

    SDK errors (MLflow, DVC, boto3, torch.export) often carry multi-line messages or tracebacks; the adapters wrap
    them in their own error with ``f"cannot ...: {one_line(error)}"`` so the user sees one line, and the full error
    stays reachable as ``__cause__``.

    Args:
        error: The exception raised by the SDK.

    Returns:
        A single line, never empty.
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
