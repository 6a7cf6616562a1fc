#!/usr/bin/env bash
# Create the venv of the Model2Vec peer of benchmarks/static_vs_model2vec.py.
#
# model2vec[distill] 0.10.0 requires transformers < 5.4 (it resolves 5.3.0 with tokenizers 0.22) and
# its distill module imports scikit-learn (the [quantization] extra), while the core is measured on
# the versions in constraints.txt (transformers 5.24.0): installed beside the core it would decide the
# core's versions. So the peer lives in a venv of its own and the benchmark drives it in a subprocess.
# torch is pinned to the CPU build already on disk: never let pip pick a torch version (an unpinned
# torch pulls GBs of CUDA wheels).
#
#   bash benchmarks/setup_model2vec_peer.sh [VENV_DIR]
# VENV_DIR defaults to $MODEL2VEC_PEER_VENV, else $CONTRASTKIT_CACHE/model2vec-peer
# (~/.cache/contrastkit/model2vec-peer); the benchmark looks in the same places.
set -euo pipefail
MODEL2VEC_VERSION=0.10.0
TORCH_VERSION=2.13.0
VENV="${1:-${MODEL2VEC_PEER_VENV:-${CONTRASTKIT_CACHE:-$HOME/.cache/contrastkit}/model2vec-peer}}"
PYTHON="${PYTHON:-python3}"
CHECK="import importlib.metadata as m, torch, model2vec.distill; \
assert m.version('model2vec') == '$MODEL2VEC_VERSION', m.version('model2vec'); \
assert torch.__version__.split('+')[0] == '$TORCH_VERSION', torch.__version__"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
    echo "peer venv ready: $VENV"
    exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
# Resolve first without installing, so a bad resolution never touches torch.
"$VENV/bin/pip" install --dry-run --quiet "torch==$TORCH_VERSION" "model2vec[distill,quantization]==$MODEL2VEC_VERSION"
"$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION" "model2vec[distill,quantization]==$MODEL2VEC_VERSION"
"$VENV/bin/python" -c "$CHECK"
"$VENV/bin/python" -c "import importlib.metadata as m; \
print('peer venv ready:', '$VENV', *(f'{p} {m.version(p)}' for p in ('model2vec', 'torch', 'transformers', 'tokenizers')))"
