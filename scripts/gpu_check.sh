#!/usr/bin/env bash
# The whole GPU check in one command (docs/gpu.md): the `gpu` tests, then the GPU benchmarks, each step
# under its own time limit so that a hang cannot eat the rest; every log, JSON and PNG goes to one folder.
#
#   bash scripts/gpu_check.sh [--tiny] [OUT]   (OUT defaults to bench/results/gpu-<UTC date>)
#
# --tiny runs the same steps on tiny random models with short loads: CI runs it on the CPU, where the `gpu`
# tests skip, so the script itself cannot rot between GPU runs.
#
# Under 8 minutes on one H100/H200 (the limits below add up to 480 s). Uses .venv/bin/python when there is
# one, else python3 with whatever PYTHONPATH provides (the GPU machine: PYTHONPATH=/tmp/site:$PWD).
# Exits non-zero when any step failed or timed out; the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."
model=qwen2.5-vl-7b
latency_args=()
streams_args=(--time-limit 150)
ingest_args=()
if [ "${1:-}" = "--tiny" ]; then
  shift
  model=tiny
  latency_args=(--sizes 4096 --budget 128 --repeats 2)
  streams_args=(--streams 1 --seconds 6 --long-media-hours 0.01)
  ingest_args=(--streams 1,4 --repeats 2)
fi
out=${1:-bench/results/gpu-$(date -u +%Y-%m-%d)}
mkdir -p "$out"
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
export PYTHONPATH=${PYTHONPATH:-$PWD} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
failed=0

step() {  # step NAME SECONDS COMMAND...: run under `timeout`, log to OUT/NAME.log, record the outcome
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  echo "== $name (limit ${limit}s): $*" | tee -a "$out/summary.txt"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  rc=$?
  [ "$rc" -eq 124 ] && echo "== $name: TIMED OUT after ${limit}s" | tee -a "$out/summary.txt"
  echo "== $name: exit $rc in $(($(date +%s) - start)) s" | tee -a "$out/summary.txt"
  [ "$rc" -eq 0 ] || failed=1
}

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  "$py" -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__,
'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" 2>&1
} | tee "$out/environment.txt"
if ! "$py" -c "import pytest" 2>/dev/null; then
  echo "pytest is missing for $py: add its wheels (docs/gpu.md)" | tee -a "$out/summary.txt"
  failed=1
else
  step gpu-tests 80 "$py" -m pytest -m gpu tests/gpu -q -p no:cacheprovider \
    --junitxml="$out/gpu-tests.xml"
fi
step answer-latency 190 "$py" bench/answer_latency.py --model "$model" "${latency_args[@]}" --out "$out"
step streams-per-gpu 180 "$py" bench/streams_per_gpu.py --model "$model" "${streams_args[@]}" --out "$out"
step selector-ingest 30 "$py" bench/selector_ingest.py --model "$model" "${ingest_args[@]}" --out "$out"
echo "results in $out" | tee -a "$out/summary.txt"
exit "$failed"
