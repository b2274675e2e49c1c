#!/usr/bin/env bash
# Made for a lent GPU machine without diffusers: wheels in .whl/ (carried), outputs under $OUT.
# Eager against accelerated (alignment/acceleration.py) side by side: SDXL-Turbo baseline / guided / scoring at
# batch 1 and 8, SD3.5-Large-Turbo baseline and a β change; the compile time, same-seed pixel differences. Each
# section in a process of its own, so that its compile is cold (SECTIONS="sdxl" for one).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-$$
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for section in ${SECTIONS:-sdxl sd35}; do
  timeout ${BUDGET:-280} python3 -m evaluations.benchmark_compile --sections $section --repeats 5 \
     --out $OUT/benchmark_compile_$section.json 2>&1 | grep -v "Loading\|it/s\|float32: \[\]" | tail -20
done
