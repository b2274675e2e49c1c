#!/usr/bin/env bash
# Made for a lent GPU machine without diffusers: wheels in .whl/ (carried). Prints where the time goes
# (evaluations/gpu/probe.py).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout ${BUDGET:-500} python3 -m evaluations.gpu.probe 2>&1 | grep -v "Loading\|it/s"
