#!/usr/bin/env bash
# One device check on a lent GPU machine (see ../shared/GPU.md). Build here first:
#   scripts/gpu-build.sh      (fills .gpu/ with stripped binaries)
# then run this with the device tool: run(command="scripts/gpu-check.sh", carry=[".gpu"]).
set -uo pipefail
OUT=${OUT:-/tmp/lem-gpu-out}
mkdir -p "$OUT"
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
export LEM_CACHE_DIR=$OUT/cache LEM_BASELINE_DURATION_S=${LEM_BASELINE_DURATION_S:-10}
{
  date -u; nvidia-smi; nvidia-smi -q -d POWER,CLOCK | head -80
} > "$OUT/nvidia-smi.txt" 2>&1
# NVML tests (ignored without a GPU)
for t in .gpu/tests/*; do "$t" --ignored --nocapture > "$OUT/$(basename "$t").log" 2>&1; echo "$t rc=$?" >> "$OUT/summary.txt"; done
.gpu/lem env --json > "$OUT/env.json" 2>&1
# what the driver answers, the counter's update period and call latencies (docs/BENCHMARKS.md;
# the fake driver's defaults follow it), then a window through the real NVML path
.gpu/lem probe --device nvml --duration 5 --json > "$OUT/probe.json" 2> "$OUT/probe.err"
echo "probe rc=$?" >> "$OUT/summary.txt"
.gpu/lem run --device nvml --no-baseline --json --timeseries --output "$OUT/results" \
  --experiment-id nvml-sleep -- sleep 5 > "$OUT/nvml-sleep.json" 2> "$OUT/nvml-sleep.err"
echo "lem run rc=$?" >> "$OUT/summary.txt"
# the workload on CUDA, then the PyTorch reference of the same shapes
for cfg in "small 1" "small 32" "llama-1b 1" "llama-1b 32"; do
  set -- $cfg
  .gpu/llm_energy --backend cuda --model "$1" --batch "$2" --dtype f16 --prompt-len 128 --gen-tokens 128 \
    --requests 3 --output "$OUT/results" --experiment-id "burn-$1-b$2" --timeseries > "$OUT/burn-$1-b$2.txt" 2>&1
  echo "burn $1 b$2 rc=$?" >> "$OUT/summary.txt"
  python3 scripts/torch_reference.py --model "$1" --batch "$2" --dtype f16 --prompt-len 128 --gen-tokens 128 \
    --requests 3 > "$OUT/torch-$1-b$2.json" 2> "$OUT/torch-$1-b$2.err"
  echo "torch $1 b$2 rc=$?" >> "$OUT/summary.txt"
done
cat "$OUT/summary.txt"
