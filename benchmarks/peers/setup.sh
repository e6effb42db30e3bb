#!/usr/bin/env bash
# Install the peer SAE trainers (EleutherAI sparsify, KempnerInstitute overcomplete) into
# benchmarks/.peers-venv, never into the project. --system-site-packages reuses the CPU torch
# already installed for the project, so pip does not pull a CUDA build.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-/work/venv/bin/python}"
venv="$here/.peers-venv"
"$python" -m venv --system-site-packages "$venv"
# The project venv is itself a venv, so --system-site-packages does not reach its torch: add a .pth.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/_project_site.pth"
"$venv/bin/pip" install --quiet --no-deps eai-sparsify overcomplete
# sparsify's own light deps (its full list pulls transformers/datasets, unused by our harness)
"$venv/bin/pip" install --quiet einops scikit-learn natsort simple-parsing safetensors huggingface_hub transformers datasets || true
# No torchvision: PyPI's wheel is built for CUDA torch and breaks `import transformers` next to the CPU
# torch (operator torchvision::nms does not exist), and download.pytorch.org is unreachable here.
# overcomplete imports torchvision only for its vision backbones; the harness stubs it (see peers.py).
"$venv/bin/pip" install --quiet --no-deps accelerate schedulefree || true
"$venv/bin/pip" uninstall --quiet -y torchvision 2>/dev/null || true
"$venv/bin/python" - <<'PY'
import importlib
for name in ("sparsify", "overcomplete"):
    try:
        importlib.import_module(name)
        print(name, "ok")
    except Exception as e:  # report, don't hide
        print(name, "FAILED:", type(e).__name__, e)
PY
