#!/usr/bin/env bash
# Create the venv of the "sentence-transformers ONNX backend" peer of benchmarks/encode_throughput.py.
#
# sentence-transformers 6.2.0's `onnx` extra does not resolve beside transformers 5 (the main venv),
# so the peer is sentence-transformers 5.1.2 with its [onnx] extra (transformers 4.57, optimum 2.1 +
# optimum-onnx, onnxruntime), in a venv of its own. torch is pinned to the CPU build already on disk:
# never let pip pick a torch version (an unpinned torch pulls GBs of CUDA wheels).
#
#   bash benchmarks/setup_st_onnx_peer.sh [VENV_DIR]
# VENV_DIR defaults to $CONTRASTKIT_CACHE/st-onnx-peer (~/.cache/contrastkit/st-onnx-peer); the
# benchmark looks there too (or in $ST_ONNX_PEER_VENV).
set -euo pipefail
ST_VERSION=5.1.2
TORCH_VERSION=2.13.0
VENV="${1:-${ST_ONNX_PEER_VENV:-${CONTRASTKIT_CACHE:-$HOME/.cache/contrastkit}/st-onnx-peer}}"
PYTHON="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import sentence_transformers as s, optimum.onnxruntime; assert s.__version__ == '$ST_VERSION'" 2>/dev/null; then
    echo "peer venv ready: $VENV"
    exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
# Resolve first without installing, so a bad resolution never touches torch.
"$VENV/bin/pip" install --dry-run --quiet "torch==$TORCH_VERSION" "sentence-transformers[onnx]==$ST_VERSION"
"$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION" "sentence-transformers[onnx]==$ST_VERSION"
"$VENV/bin/python" -c "import torch, sentence_transformers as s, optimum.onnxruntime, onnxruntime as o; \
print('peer venv ready:', '$VENV', 'torch', torch.__version__, 'sentence-transformers', s.__version__, 'onnxruntime', o.__version__)"
