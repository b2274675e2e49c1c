#!/usr/bin/env bash
# Made for a lent GPU machine without diffusers: wheels in .whl/ (carried), outputs under $OUT.
# Retrain the toy guidance network on the shipped toy-pickscore, on toy-sdxl's own samples: fresh preference pairs
# (14 processes), one guidance cache, then two networks trained side by side on the one GPU (toy_size and
# toy_wide_size), exported to $OUT/toy-guidance and $OUT/toy-guidance-wide; then evaluations/gpu/evaluate_guidance.sh
# sweeps them beside the shipped network. Stages are bounded so the whole call ends inside eight minutes.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
T0=$(date +%s)
mkdir -p /tmp/prefs
[ -d /tmp/gcache ] && echo "cache kept from an earlier call" || for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13; do   # each process writes small shards one after another until the time is up
  ( for j in 0 1 2 3 4 5 6 7 8 9; do
      [ $(( $(date +%s) - T0 )) -gt 85 ] && break
      timeout $(( 120 - ($(date +%s) - T0) )) python3 -m training toy-preferences --captions 600 --seed $((800 + 10 * i + j)) \
         --out /tmp/prefs/part${i}_$j.parquet --device cuda --sources toy-sdxl:toy-sdxl >> /tmp/prefs/log$i.txt 2>&1
    done ) &
done
wait; rm -f /tmp/prefs/*.tmp; tail -2 /tmp/prefs/log0.txt; echo "$(ls /tmp/prefs/*.parquet | wc -l) shards"
echo "prefs done $(( $(date +%s) - T0 )) s"
[ -d /tmp/gcache ] || timeout 60 python3 -m training guidance-cache --pairs /tmp/prefs --out /tmp/gcache --models toy-sdxl 2>&1 | grep -v Loading | tail -3
echo "cache done $(( $(date +%s) - T0 )) s"
MIN=$(python3 -c "print(round((${TRAIN_UNTIL:-320} - ($(date +%s) - $T0)) / 60, 2))")
for size in toy toy-wide; do
  name=toy-guidance; [ $size = toy-wide ] && name=toy-guidance-wide
  timeout 400 python3 -m training guidance --cache /tmp/gcache --work /tmp/guid-$size --export $OUT/$name --size $size \
     --steps 12000 --readout-steps 2000 --focus 0.5 --batch-size 256 --lr 1e-3 --max-minutes $MIN --no-cuda-graph > /tmp/train-$size.log 2>&1 &
done
wait
for size in toy toy-wide; do grep -v "Loading\|it/s\]" /tmp/train-$size.log | tail -3; done
ls $OUT/*; echo "training done $(( $(date +%s) - T0 )) s"
EVAL_SECONDS=100 bash evaluations/gpu/evaluate_guidance.sh $OUT/toy-guidance $OUT/toy-guidance-wide checkpoints/toy-guidance
echo "all done $(( $(date +%s) - T0 )) s"
