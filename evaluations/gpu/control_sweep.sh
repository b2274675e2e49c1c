#!/usr/bin/env bash
# Made for a lent GPU machine without diffusers: wheels in .whl/ (carried), outputs under $OUT.
# Train guidance networks through their sampler (`python -m training guidance-control`) in several settings side by
# side on the one GPU, then sweep each on the validation split (evaluations.pareto). Everything comes back as one
# archive, $OUT/control_sweep.tar.gz: the exported networks, the training logs and the validation tables.
#   run(command="bash evaluations/gpu/control_sweep.sh", carry=[".whl"])
# Settings: NAME:ARGS pairs in $RUNS (default below); $TRAIN_MIN minutes of training, then the sweep.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
T0=$(date +%s)
W=/tmp/control-sweep; mkdir -p $W
RUNS=${RUNS:-"cont-pair:--init-from=checkpoints/toy-guidance,--steps=1500,--lr=1e-4,--batch-size=64,--pair-temperature=0.5
wide:--size=toy-wide,--steps=2500,--lr=3e-4,--batch-size=64
wide-pair:--size=toy-wide,--steps=2500,--lr=3e-4,--batch-size=64,--pair-temperature=0.5
wide-k01:--size=toy-wide,--steps=2500,--lr=3e-4,--batch-size=64,--kl-weight=0.1"}
for spec in $RUNS; do
  name=${spec%%:*}; args=$(echo "${spec#*:}" | tr ',' ' ' | sed 's/=/ /g')
  timeout $(( ${TRAIN_MIN:-6} * 60 + 90 )) python3 -m training guidance-control --work $W/work-$name --export $W/$name \
     $args --max-minutes ${TRAIN_MIN:-6} > $W/train-$name.log 2>&1 &
done
wait
for spec in $RUNS; do name=${spec%%:*}; echo "== $name"; tr '\r' '\n' < $W/train-$name.log | grep -v "Loading\|^\s*$" | tail -3 | cut -c1-300; done
echo "training done $(( $(date +%s) - T0 )) s"
M="base bon:n=2"
for b in 0.05 0.1 0.3; do for a in 1 1.5 2; do M="$M guided:beta=$b,eta=1,alpha=$a"; done; done
for spec in $RUNS; do
  name=${spec%%:*}
  [ -f $W/$name/config.json ] || continue
  timeout ${EVAL_SECONDS:-200} python3 -m evaluations.pareto --model toy-sdxl --split validation --captions 100 --batch 100 \
     --device cuda --network $W/$name --methods $M --out-dir $W/eval --tag _$name --grid-captions 0 > $W/eval-$name.log 2>&1 &
done
wait
for spec in $RUNS; do name=${spec%%:*}; echo "== $name"; grep "^| guided\|^| base\|^| best\|Error" $W/eval-$name.log | cut -c1-200; done
rm -rf $W/work-* $W/eval/*.html $W/eval/*.png
tar -czf $OUT/control_sweep.tar.gz -C $W .
echo "all done $(( $(date +%s) - T0 )) s"
