#!/usr/bin/env bash
# The GPU figures in BENCHMARKS.md, as one job on a machine with CUDA and PyTorch:
#
#   OUT=/tmp/gpu bash bench/gpu_check.sh
#
# About 10 minutes in all: on a machine whose calls are limited to 10 minutes, run the stages in
# two calls (STAGE2_S=0 for the first, STAGE1_S=0 STAGE3_S=0 for the second).
# Each stage has its own time limit and writes its results to $OUT as it goes, so a stage that
# runs long costs only itself. Stages, most important first:
#   1. 10,000 per-series models (LSTM, GRU, Transformer), fixed 2 epochs, and their forecast;
#   2. the shipped storage-quota target (deploy/tsf-adapter.yml) over 10,000 series, trained as the
#      daemon trains it (one network, calibrated bands) for a 300 s budget, then one forecast;
#   3. 100,000 per-series LSTM models, the upper end of one target.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
# stage LIMIT_S LOG ARGS...: run `python -m ARGS` for at most LIMIT_S seconds; 0 skips it.
stage() {
    local limit=$1 log=$2
    shift 2
    [ "$limit" -gt 0 ] || return 0
    timeout "$limit" "$PY" -m "$@" 2>&1 | tee "$OUT/$log"
}
{ nvidia-smi -L; nproc; "$PY" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'; } \
    2>&1 | tee "$OUT/device.txt"
stage "${STAGE1_S:-180}" gpu_train.log bench.gpu_train --models lstm gru transformer --loop-series 10 \
    --json "$OUT/gpu_train.json"
stage "${STAGE2_S:-390}" train_daemon.log bench.train_daemon --config deploy/tsf-adapter.yml \
    --target storage-quota --series 10000 --device cuda --budget 300 --json "$OUT/train_daemon.json"
stage "${STAGE3_S:-90}" gpu_train_100k.log bench.gpu_train --series 100000 --models lstm --loop-series 0 \
    --json "$OUT/gpu_train_100k.json"
echo "done"
