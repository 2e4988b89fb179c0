#!/usr/bin/env bash
# Set up .venv on a fresh machine: torch first and pinned, so that nothing
# later resolves another torch build (a CUDA one is several GB), then gradtune.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet torch==2.13.0
echo "torch==2.13.0" > .venv/torch-constraint.txt
# second-order: the optional SOAP/Shampoo package, so that the tests that train them run here and in CI.
.venv/bin/python -m pip install --quiet -c .venv/torch-constraint.txt -e ".[test,second-order]"
.venv/bin/python -c "import torch, gradtune; print('gradtune', gradtune.__version__, 'torch', torch.__version__)"
