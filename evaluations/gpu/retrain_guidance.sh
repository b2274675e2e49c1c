#!/usr/bin/env bash
# Made for a lent GPU machine without diffusers: wheels in .whl/ (carried), outputs under $OUT.
# Retrain the toy guidance network on the shipped toy-pickscore, on toy-sdxl's own samples, then sweep it on the
# validation split. Stages are bounded so the whole call ends inside ten minutes.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
T0=$(date +%s)
mkdir -p /tmp/prefs
for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13; do   # each process writes small shards one after another until the time is up
  ( for j in 0 1 2 3 4 5 6 7 8 9; do
      [ $(( $(date +%s) - T0 )) -gt 150 ] && break
      timeout $(( 210 - ($(date +%s) - T0) )) python3 -m training toy-preferences --captions 600 --seed $((800 + 10 * i + j)) \
         --out /tmp/prefs/part${i}_$j.parquet --device cuda --sources toy-sdxl:toy-sdxl >> /tmp/prefs/log$i.txt 2>&1
    done ) &
done
wait; rm -f /tmp/prefs/*.tmp; tail -2 /tmp/prefs/log0.txt; ls -la /tmp/prefs | head; echo "prefs done $(( $(date +%s) - T0 )) s"
timeout 90 python3 -m training guidance-cache --pairs /tmp/prefs --out /tmp/gcache --models toy-sdxl 2>&1 | grep -v Loading | tail -3
echo "cache done $(( $(date +%s) - T0 )) s"
timeout 240 python3 -m training guidance --cache /tmp/gcache --work /tmp/guid --export $OUT/toy-guidance --steps 8000 \
   --readout-steps 2000 --focus 0.5 --batch-size 256 --lr 1e-3 --max-minutes 3.3 2>&1 | grep -v Loading | tail -5
ls $OUT/toy-guidance; echo "train done $(( $(date +%s) - T0 )) s"
D="base bon:n=2"
for b in 0.05 0.1 0.3 1; do D="$D guided:beta=$b,eta=1"; done
timeout 75 python3 -m evaluations.pareto --model toy-sdxl --split validation --captions 200 --batch 50 --device cuda \
   --network $OUT/toy-guidance --methods $D --out-dir $OUT --tag _sweep_new 2>&1 | grep "^|\|^\*"
echo "all done $(( $(date +%s) - T0 )) s"
