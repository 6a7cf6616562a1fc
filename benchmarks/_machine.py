"""What every benchmark records about the machine and the software it ran on."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# Distributions whose versions can change a benchmark's figures (quality or speed).
PACKAGES = ("torch", "transformers", "tokenizers", "sentence-transformers", "safetensors", "numpy", "scipy",
            "scikit-learn", "faiss-cpu", "onnxruntime", "gguf", "contrastkit")


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (platform's answer elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Exact versions of python and of each installed package of PACKAGES (then ``extra``) in this interpreter."""
    out = {"python": platform.python_version()}
    for pkg in (*PACKAGES, *extra):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def peer_versions(python: str | Path, extra: Iterable[str] = ()) -> dict[str, str]:
    """``versions(extra)`` as another interpreter (a peer's venv) sees them."""
    proc = subprocess.run([str(python), str(Path(__file__).resolve()), *extra], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout)


if __name__ == "__main__":  # run by peer_versions() under a peer's python: stdlib only
    print(json.dumps(versions(sys.argv[1:])))
