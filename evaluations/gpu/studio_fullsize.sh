#!/usr/bin/env bash
# The studio served at full size on one GPU, driven through its HTTP API as a browser does. Made for a lent GPU
# machine without diffusers, gradio or sqlalchemy and without network: wheels in .whl/ and .whl-studio/ (carried,
# git-ignored), outputs under $OUT (studio_fullsize.json, written as it goes; a few small PNGs; the server's log).
#   STUDIO_COMPILE=off measures the eager page (default: auto, compiled at start-up on CUDA).
#   1. install the wheels into /tmp/site;  2. write the hub twins (random weights, ~27 GB) into /tmp/models;
#   3. serve app.py on them (sdxl-turbo=…, sd3.5-large-turbo=…) on CUDA;  4. python -m benchmarks.benchmark_studio
#   --url …: per model the first pair, a second prompt, a β change, an N change (flow), an Arena pair and a vote;
#   5. stop the server. Every stage is bounded: the whole script ends within $BUDGET seconds (default 540).
# The tree and both wheel folders exceed the lent machine's 64 MiB: run evaluations/gpu/slim_tree.sh out before the
# call and evaluations/gpu/slim_tree.sh back after it (it moves checkpoints/ and the PNGs aside; this script needs neither).
# A CPU check of the same path: STUDIO_FULLSIZE_TINY=1 SKIP_INSTALL=1 OUT=/tmp/sfs-out bash evaluations/gpu/studio_fullsize.sh
# (tiny twins, --device cpu; python3 must then be one with the requirements, e.g. PATH=/work/venv/bin:$PATH).
set -u
START=$(date +%s)
BUDGET=${BUDGET:-540}
OUT=${OUT:-/tmp/studio-fullsize-out}
mkdir -p "$OUT"
JSON=$OUT/studio_fullsize.json
TINY=${STUDIO_FULLSIZE_TINY:-0}
PORT=${PORT:-7860}
if [ "$TINY" = 1 ]; then
  MODELS_DIR=${MODELS_DIR:-/tmp/sfs-tiny-models}; DEVICE=cpu; TWIN_ARGS=(--tiny --device cpu --dtype fp32)
else
  MODELS_DIR=${MODELS_DIR:-/tmp/models}; DEVICE=cuda; TWIN_ARGS=()
fi
MODEL_NAMES=(sdxl-turbo="$MODELS_DIR/sdxl-turbo" sd3.5-large-turbo="$MODELS_DIR/sd3.5-large-turbo")
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
  GRADIO_ANALYTICS_ENABLED=False GRADIO_ANALYTICS_CACHE_FREQUENCY=100 HF_HUB_DISABLE_TELEMETRY=1 \
  DO_NOT_TRACK=1 OTEL_SDK_DISABLED=true

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
card() { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1 | grep . || echo none; }
used_mib() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 | grep . || echo null; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$1" "$(now)"; }
# jset KEY VALUE: set a dotted KEY of the report to VALUE (JSON if it parses, else a string)
jset() {
  python3 - "$JSON" "$1" "$2" <<'EOF'
import json, os, sys
path, key, value = sys.argv[1:]
try:
    data = json.load(open(path))
except (OSError, ValueError):
    data = {}
try:
    value = json.loads(value)
except ValueError:
    pass
node = data
*parents, last = key.split(".")
for k in parents:
    node = node.setdefault(k, {})
node[last] = value
with open(path + ".tmp", "w") as f:
    f.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
os.replace(path + ".tmp", path)
EOF
}
SERVER_PID=""; SAMPLER_PID=""
cleanup() {
  if [ -n "$SAMPLER_PID" ]; then kill "$SAMPLER_PID" 2>/dev/null; fi
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=""; SAMPLER_PID=""
}
finish() {  # the end: stop the server, fold the memory trace into the report, print it
  cleanup
  if [ -s "$OUT/gpu_memory_trace.csv" ]; then
    jset gpu_memory_peak_mib "$(python3 -c "
import sys
rows = [l.split(',') for l in open(sys.argv[1]) if l.count(',') >= 2]
used = [int(r[1]) for r in rows if r[1].strip().isdigit()]
own = [int(r[2]) for r in rows if r[2].strip().isdigit()]
print('{\"card_used\": %s, \"server\": %s, \"samples\": %d}' % (max(used) if used else 'null', max(own) if own else 'null', len(rows)))
" "$OUT/gpu_memory_trace.csv")"
  fi
  jset gpu_memory_used_end_mib "$(used_mib)"
  jset total_s "$(( $(date +%s) - START ))"
  echo "== $JSON"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d.get('studio',{}).pop('models',None); print(json.dumps(d, indent=1)[:3000])" "$JSON" 2>/dev/null
  echo "== finished in $(( $(date +%s) - START )) s"
}
trap 'cleanup' EXIT
trap 'cleanup; exit 130' INT TERM

rm -f "$JSON"
jset date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
jset commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
jset command "bash evaluations/gpu/studio_fullsize.sh"
jset tiny "$TINY"
jset device "$DEVICE"
jset card "$(card)"
jset python "$(python3 -c 'import sys; print(sys.version.split()[0])')"
echo "== card: $(card) · budget ${BUDGET} s"

# 1. wheels ------------------------------------------------------------------------------------------------------
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  t=$(now)
  timeout 150 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl .whl-studio/*.whl 2>&1 | grep -v "WARNING: Target directory" | tail -5
  export PYTHONPATH=/tmp/site:$PWD
  jset stages.install_s "$(since "$t")"
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  jset stages.install_s "skipped"
fi
if ! check=$(timeout 120 python3 -c "import gradio, diffusers, sqlalchemy, plotly; print('gradio', gradio.__version__, 'diffusers', diffusers.__version__, 'sqlalchemy', sqlalchemy.__version__, 'plotly', plotly.__version__)" 2>&1); then
  echo "ABORT: the studio's packages do not import:"; echo "$check" | tail -15
  jset error "imports failed: $(echo "$check" | tail -3 | tr '\n' ' ' | cut -c1-600)"
  finish; exit 1
fi
echo "== $check"; jset packages "$check"

# 2. hub twins ---------------------------------------------------------------------------------------------------
t=$(now)
limit=$(( $(left) - 150 )); [ "$limit" -gt 360 ] && limit=360
echo "== writing the hub twins into $MODELS_DIR (at most ${limit} s)"
rm -rf "$MODELS_DIR"
timeout "$limit" python3 -m evaluations.hub_twins --out "$MODELS_DIR" ${TWIN_ARGS[@]+"${TWIN_ARGS[@]}"} > "$OUT/hub_twins.log" 2>&1
rc=$?
tail -14 "$OUT/hub_twins.log" | grep -av "^  *STUDIO_REWARD\|^Serve the studio"
jset stages.hub_twins_s "$(since "$t")"
jset stages.hub_twins_rc "$rc"
jset stages.hub_twins_gb "$(du -sb "$MODELS_DIR" 2>/dev/null | python3 -c "import sys; print(round(int(sys.stdin.read().split()[0]) / 1e9, 2))" 2>/dev/null || echo null)"
if [ "$rc" != 0 ] || [ ! -f "$MODELS_DIR/sd3.5-large-turbo/model_index.json" ]; then
  echo "ABORT: the hub twins were not written (rc $rc)"; tail -20 "$OUT/hub_twins.log"
  jset error "hub twins failed (rc $rc): $(tail -3 "$OUT/hub_twins.log" | tr '\n' ' ' | cut -c1-600)"
  finish; exit 1
fi

# 3. the studio ----------------------------------------------------------------------------------------------------
export STUDIO_DATA_DIR=$(mktemp -d /tmp/studio-data-XXXXXX)
export STUDIO_DATABASE_URL=sqlite:///$STUDIO_DATA_DIR/studio.sqlite
export STUDIO_REWARD=$MODELS_DIR/pickscore STUDIO_GUIDANCE=$MODELS_DIR/guidance
export STUDIO_COMPILE=${STUDIO_COMPILE:-auto}  # as the studio serves on CUDA by default (compiled at start-up); off: eager
SERVE="python3 app.py --models $(IFS=,; echo "${MODEL_NAMES[*]}") --device $DEVICE --port $PORT"
jset server_command "STUDIO_REWARD=$STUDIO_REWARD STUDIO_GUIDANCE=$STUDIO_GUIDANCE $SERVE"
echo "== $SERVE"
IDLE_USED=$(used_mib)
jset gpu_memory_idle_mib "$IDLE_USED"
[ "$IDLE_USED" = null ] && IDLE_USED=0
t=$(now)
$SERVE > "$OUT/server.log" 2>&1 < /dev/null &
SERVER_PID=$!
if command -v nvidia-smi > /dev/null; then
  ( while kill -0 "$SERVER_PID" 2>/dev/null; do
      used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
      own=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null \
            | awk -F', *' -v p="$SERVER_PID" '$1 == p {print $2}')
      echo "$(date +%s),${used},${own}"
      sleep 1
    done ) > "$OUT/gpu_memory_trace.csv" 2>/dev/null &
  SAMPLER_PID=$!
fi
up=0
while [ "$(left)" -gt 60 ] && [ "$(( $(date +%s) - ${t%.*} ))" -lt 180 ]; do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  if python3 -c "import sys, httpx; sys.exit(httpx.get(sys.argv[1], timeout=5).status_code != 200)" \
       "http://127.0.0.1:$PORT/config" 2>/dev/null; then up=1; break; fi
  sleep 2
done
jset stages.server_up_s "$(since "$t")"
if [ "$up" != 1 ]; then
  echo "ABORT: the studio did not answer on port $PORT"; tail -30 "$OUT/server.log"
  jset error "the studio did not start: $(tail -5 "$OUT/server.log" | tr '\n' ' ' | cut -c1-600)"
  finish; exit 1
fi
# the warm-up (app.py loads the models, the reward and the guidance network in the background, and on CUDA compiles
# each model and renders it once): wait for its last log line (studio.engine.WARM_LOG), so that the first click
# measures a warm studio, not the warm-up; at most WARM_S seconds (default 330; compiling both full-size models took 193 s on an H100), bounded by the budget
t=$(now)
while [ "$(left)" -gt 120 ] && [ "$(( $(date +%s) - ${t%.*} ))" -lt "${WARM_S:-330}" ]; do
  grep -q "studio warm-up done" "$OUT/server.log" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 2
done
jset stages.warm "$(grep -q "studio warm-up done" "$OUT/server.log" 2>/dev/null && echo true || echo false)"
jset stages.warm_up_wait_s "$(since "$t")"
echo "== serving after $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['stages']['server_up_s'])" "$JSON") s; driving it"

# 4. the page, through HTTP ---------------------------------------------------------------------------------------
limit=$(( $(left) - 25 ))
[ "$limit" -lt 20 ] && { echo "ABORT: no time left to drive the page"; jset error "no time left to drive the page"; finish; exit 1; }
timeout "$limit" python3 -m benchmarks.benchmark_studio --url "http://127.0.0.1:$PORT/" --models "${MODEL_NAMES[@]}" \
  --budget $(( limit - 10 )) --request-timeout 150 --server-pid "$SERVER_PID" --out "$JSON" --images "$OUT" \
  2>&1 | grep -av "^\s*$" | tail -40
jset stages.benchmark_rc "${PIPESTATUS[0]}"
echo "== the server's log, last lines (progress bars left out):"
tr '\r' '\n' < "$OUT/server.log" | grep -av "it/s\]\|s/it\]\|^\s*$" | tail -8 | cut -c1-300

# 5. stop ------------------------------------------------------------------------------------------------------------
finish
