#!/usr/bin/env bash
# Made for a lent GPU machine without diffusers: wheels in .whl/ (carried), outputs under $OUT.
# The defaults' cost at full size on one GPU: SDXL-Turbo guided against base, SD3.5-Large-Turbo IS (tuned) at N = 8
# against best-of-N, random weights from alignment/model_configs, bf16.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 540 python3 -m evaluations.benchmark_gpu --sections sdxl sd35 --ns 8 --beta 0.1 --repeats 3 \
   --out $OUT/benchmark_gpu_defaults.json 2>&1 | grep -v "Loading\|it/s" | tail -40
