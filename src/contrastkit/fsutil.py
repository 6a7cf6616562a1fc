"""Small file-system helpers shared by everything that writes model directories or caches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """Directory for converted models and caches (``$CONTRASTKIT_CACHE`` or ``~/.cache/contrastkit``)."""
    return Path(os.environ.get("CONTRASTKIT_CACHE", Path.home() / ".cache" / "contrastkit"))


def fresh_tmp_dir(dest: Path) -> Path:
    """An empty sibling directory of ``dest`` to write into before :func:`replace_dir`."""
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` through a hidden temporary sibling and a rename: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_save_npy(path: Path, array: Any) -> None:
    """``numpy.save`` to ``path`` atomically (temporary sibling, then a rename)."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


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
