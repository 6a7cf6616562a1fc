"""Reading training data: Examples from text, CSV, TSV, JSONL files and Hugging Face datasets."""

from __future__ import annotations

from contrastkit.data.examples import Example, ReadStats
from contrastkit.data.readers import (
    MAX_LINE_BYTES,
    OptionalDependencyError,
    iter_examples,
    iter_hf_dataset,
    open_examples,
    read_examples,
)

__all__ = [
    "MAX_LINE_BYTES",
    "Example",
    "OptionalDependencyError",
    "ReadStats",
    "iter_examples",
    "iter_hf_dataset",
    "open_examples",
    "read_examples",
]
