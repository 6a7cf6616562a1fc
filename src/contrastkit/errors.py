"""Exceptions raised by contrastkit, each carrying where and what went wrong."""

from __future__ import annotations


class ContrastkitError(Exception):
    """Base class of every error contrastkit raises on purpose."""


class ConfigError(ContrastkitError, ValueError):
    """A configuration is invalid: unknown key, wrong type or impossible combination."""


class DataError(ContrastkitError, ValueError):
    """Input data is malformed; the message names the file, the line and what was expected."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class TrainingError(ContrastkitError, RuntimeError):
    """Training cannot continue (for example a non-finite loss)."""
