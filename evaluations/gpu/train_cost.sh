#!/usr/bin/env bash
# Made for a lent GPU machine without diffusers: wheels in .whl/ (carried), outputs under $OUT.
# The guidance network's training cost against Diffusion-DPO's at full size (evaluations/benchmark_gpu.py, section
# training): steps at 8 and 128 pairs, the guidance cache (as `python -m training guidance-cache` makes it) and the
# cached consistency targets, per Pick-a-Pic v1 epoch.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout ${BUDGET:-240} python3 -m evaluations.benchmark_gpu --sections training --train-pairs 8 --guidance-pairs 8 128 \
   --consistency-fractions 1.0 0.25 --repeats 5 --warmup 2 --cache-pairs 64 --cache-batch 32 \
   --out $OUT/benchmark_gpu_train8.json 2>&1 | grep -v "Loading\|it/s" | tail -30
