"""Small file-system helpers shared by everything that writes model directories."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def replace_dir(tmp: Path, dest: Path) -> Path:
    """Move the finished directory ``tmp`` to ``dest``, replacing any old ``dest`` (renames, then deletes)."""
    if dest.exists():
        old = dest.with_name(dest.name + f".old{os.getpid()}")
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old)
    else:
        tmp.rename(dest)
    return dest
