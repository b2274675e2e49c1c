#!/usr/bin/env bash
# Made for a lent GPU machine without diffusers: wheels in .whl/ (carried, with torchao's), outputs under $OUT.
# SD3.5-Large-Turbo accelerated in bf16 against the same with its transformer blocks' linear layers in FP8
# (benchmark_compile, section sd35 --variants fp8 full-context --skip-eager; VARIANTS, PROFILE=1, REPEATS, SD35_S
# set them); SECTIONS adds SD3.5's joint attention by SDPA backend
# ("attention") and SDXL's VAE encoder, the cost of the guidance cache ("encoder"), each in a process of its own.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-$$
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
filter() { grep -v "Loading\|it/s\|float32: \[\]\|Warning\|warn_once\|This call originates\|File \"\|if dtype ==\|^$\|Configuration class\|Unable to import" | tail -${1:-24}; }
timeout ${SD35_S:-560} python3 -m evaluations.benchmark_compile --sections sd35 --variants ${VARIANTS:-fp8 full-context} --skip-eager ${PROFILE:+--profile} \
   --repeats ${REPEATS:-5} --out $OUT/benchmark_compile_sd35_fp8.json 2>&1 | filter 40
for section in ${SECTIONS:-}; do
  timeout 120 python3 -m evaluations.benchmark_compile --sections $section --repeats 5 \
     --out $OUT/benchmark_$section.json 2>&1 | filter
done
