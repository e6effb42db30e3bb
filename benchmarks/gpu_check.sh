#!/usr/bin/env bash
# Every stage on a GPU at small size, then the SAE training step against the bare GEMM: one call on a lent
# GPU machine. Writes its logs and result files to OUT (the device tool's $OUT) and prints a summary.
#
#   bash benchmarks/gpu_check.sh                # on the GPU machine, from the repository root (python3 has torch)
#   DEVICE=cpu SMALL=1 bash benchmarks/gpu_check.sh /tmp/gc   # the same steps on a CPU, tiny, to check the script
#
# Needs only what the device image holds (torch, numba, numpy, safetensors, typer, rich, jinja2, matplotlib,
# scikit-learn, pyyaml, pillow): the package runs from src/ with seeded random weights (UNTRAINED) and the
# demo's procedural images, so nothing is downloaded; umap-learn is optional and absent there.
set -uo pipefail
OUT=${1:-${OUT:-/tmp/gpu_check}}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1 INCEPTION_SAE_CACHE=${INCEPTION_SAE_CACHE:-/tmp/inception-sae-cache}
status=0
step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, note the wall time and the exit code
  local name=$1; shift
  local t0=$SECONDS
  "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc, $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] || { status=1; tail -n 20 "$OUT/$name.log"; }
}

step env $PY -c "
import torch, platform
print('torch', torch.__version__, 'python', platform.python_version())
print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')
assert '$DEVICE' == 'cpu' or torch.cuda.is_available(), 'no GPU visible to torch'
"
cat "$OUT/env.log"

# 1. every stage on the device: harvest, train, eval, analyze, featvis, circuits, compare, site (the offline demo)
if [ -n "${SMALL:-}" ]; then
  demo_size=(--images 32 --size 64 --samples 16384 --features 2 --steps 4 --set "layers=[mixed3b, mixed4a]"
             --set train.batch_size=256)
else demo_size=(--images 140 --samples 204800 --set "layers=[mixed4a, mixed4b]"); fi  # two layers: circuits, compare
rm -rf /tmp/gpu_check_demo
step demo $PY -m inception_sae demo --offline --out /tmp/gpu_check_demo --no-progress "${demo_size[@]}" \
  --set device="$DEVICE"
grep -E "done in|skipped|error" "$OUT/demo.log" | tee -a "$OUT/summary.txt"

# 2. the SAE training step (d=528, m=8,448, k=32, batch 4,096) against the bare encoder GEMM, fp32 and bf16
if [ -n "${SMALL:-}" ]; then sae=(--steps 6 --latents 512 --batch 256 --rows 4096 --data varied)
else sae=(--steps 24 --rows 65536); fi
for dtype in float32 bfloat16; do
  step "sae_$dtype" $PY benchmarks/sae_architectures.py "${sae[@]}" --device "$DEVICE" --dtype "$dtype" \
    --out "$OUT/sae_architectures_$dtype.json"
done

$PY - "$OUT" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for f in sorted(out.glob("sae_architectures_*.json")):
    for r in json.loads(f.read_text())["rows"]:
        print(f"{f.stem[18:]:9s} {r['data']:8s} {r['architecture']:11s} step {1e3 * r['step_s']:7.2f} ms, "
              f"{r['samples_per_s']:12,.0f} samples/s, step / GEMM {r['step_over_gemm_prealloc']:.2f}")
PY
exit $status
