#!/usr/bin/env sh
# Install torch into the virtual environment of PYTHON without ever pulling a CUDA build by accident.
#
# pip's default torch on Linux is the CUDA build (several GB). The project declares only a range
# (torch>=2.4), so the build is chosen here, before the package is installed:
#   1. a wheel of the pinned version that pip finds locally (find-links, e.g. a CPU wheel on disk);
#   2. else, with an NVIDIA GPU (nvidia-smi works): PyPI's default CUDA build;
#   3. else: the CPU build from the PyTorch CPU index.
# Override with TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 (any PyTorch index).
set -eu
PYTHON="$1"
VERSION="${2:-2.13.0}"
if "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "torch already installed: $("$PYTHON" -c 'import torch; print(torch.__version__)')"
    exit 0
fi
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    exec "$PYTHON" -m pip install "torch==$VERSION" --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple
fi
if "$PYTHON" -m pip install --no-index --no-deps "torch==$VERSION" 2>/dev/null; then
    echo "torch $VERSION installed from a local wheel"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    "$PYTHON" -m pip install "torch==$VERSION"
else
    "$PYTHON" -m pip install "torch==$VERSION" --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
fi
