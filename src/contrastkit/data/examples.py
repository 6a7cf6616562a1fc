"""Training examples and the counters a reader keeps while producing them."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Example:
    """One training example: anchor text first, then positive, then negatives; optional score."""

    texts: tuple[str, ...]
    score: float | None = None

    def __post_init__(self) -> None:
        texts = self.texts
        if not isinstance(texts, tuple):
            if isinstance(texts, str):
                raise TypeError("Example.texts must be a sequence of strings, not a single string")
            texts = tuple(texts)
            object.__setattr__(self, "texts", texts)
        if not texts:
            raise ValueError("Example.texts must hold at least one text")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"Example.texts[{i}] must be str, found {type(text).__name__}")
        if self.score is not None:
            if isinstance(self.score, bool) or not isinstance(self.score, (int, float)):
                raise TypeError(f"Example.score must be a number or None, found {type(self.score).__name__}")
            if not math.isfinite(self.score):
                raise ValueError(f"Example.score must be finite, found {self.score!r}")
            object.__setattr__(self, "score", float(self.score))


@dataclass(slots=True)
class ReadStats:
    """Counters filled in while a source is read: lines (or rows) read, examples produced, blanks skipped.

    Blank lines (empty or whitespace only) are skipped and counted in ``skipped_blank``.
    A non-blank row with an empty text field is an error, never skipped, so there is no
    separate counter for it.
    """

    source: str = ""
    lines_read: int = 0
    examples: int = 0
    skipped_blank: int = 0

    def reset(self, source: str) -> None:
        """Zero every counter and record which source is being read."""
        self.source = source
        self.lines_read = 0
        self.examples = 0
        self.skipped_blank = 0
