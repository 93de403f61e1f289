"""The one error of file input and output: what the command cannot use, named."""

from __future__ import annotations


class InputError(ValueError):
    """Input the command cannot use; the message says what and how to fix it."""
