#!/usr/bin/env bash
# Made for a lent GPU machine without diffusers: wheels in .whl/ (carried), outputs under $OUT.
# Sweep guidance networks on toy-sdxl: the validation split (to choose) and the test split (to report), every
# network folder given as an argument, side by side on the one GPU.
#   bash evaluations/gpu/evaluate_guidance.sh runs/new/toy-guidance runs/new/toy-guidance-wide checkpoints/toy-guidance
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
T0=$(date +%s)
M="base bon:n=2 bon:n=3"
for b in 0.05 0.1 0.3 1; do for a in 1 2; do M="$M guided:beta=$b,eta=1,alpha=$a"; done; done
for net in "$@"; do
  for split in validation test; do
    timeout ${EVAL_SECONDS:-280} python3 -m evaluations.pareto --model toy-sdxl --split $split --captions 200 --batch 100 \
       --device cuda --network $net --methods $M --out-dir $OUT --tag _$(basename $net) --grid-captions 0 \
       > /tmp/eval-$(basename $net)-$split.log 2>&1 &
  done
done
wait
for f in /tmp/eval-*.log; do echo "== $f"; grep "^|\|^\*\|Error" $f | cut -c1-220; done
rm -f $OUT/*.html $OUT/*.png
echo "all done $(( $(date +%s) - T0 )) s"
