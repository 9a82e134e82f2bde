#!/usr/bin/env bash
# The checks that need a GPU, as one short script for a lent machine (run from the repository root):
#   bash benchmarks/gpu_check.sh OUT_DIR
# 1. a model with blocks on cuda:0 and the CPU compresses end to end (tests/test_device_map.py, skipped on CPU);
# 2. the scaling table for a LLaMA-7B shape on the GPU (random weights; 8 and 32 blocks) and TinyLlama's.
set -euo pipefail
out="${1:-${OUT:-/tmp/gpu-check}}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python -m pytest -q tests/test_device_map.py 2>&1 | tee "$out/device_map.txt"
python -m benchmarks.scaling --shapes llama7b tinyllama --depths 8 32 --device cuda --out "$out/scaling" 2>&1 \
    | tee "$out/scaling.txt"
