#!/usr/bin/env bash
# The Arena's load side by side: the studio of an older commit against this working tree, served in turn on one
# port and driven by this tree's voters (benchmarks/load_test.py), ROUNDS times alternating, so both see the same
# machine. For each run: votes/s of its two repeats and the server's CPU time per round (pair + vote), read from
# /proc (Linux). Usage:  bash benchmarks/load_ab.sh <git ref of the baseline> [ROUNDS=3]
set -u
REF=${1:?usage: bash benchmarks/load_ab.sh <git ref> [rounds]}; ROUNDS=${2:-3}
HERE=$(git rev-parse --show-toplevel); PY=${PYTHON:-python}; PORT=${PORT:-7912}; W=$(mktemp -d)
git -C "$HERE" worktree add -f --detach "$W/baseline" "$REF" -q || exit 1
trap 'pkill -f "load_test serve .*--port $PORT" 2>/dev/null; git -C "$HERE" worktree remove --force "$W/baseline"; rm -rf "$W"' EXIT
for round in $(seq "$ROUNDS"); do
  for side in baseline current; do
    tree=$([ $side = baseline ] && echo "$W/baseline" || echo "$HERE"); data=$W/$side-$round; mkdir -p "$data"
    (cd "$tree" && OMP_NUM_THREADS=1 exec $PY -m benchmarks.load_test serve --database-url "sqlite:///$data/s.db" \
       --data-dir "$data/images" --port $PORT --votes-per-voter 400 > "$data/serve.log" 2>&1) &
    server=$!
    for _ in $(seq 60); do curl -sf "http://127.0.0.1:$PORT/config" > /dev/null && break; sleep 1; done
    read -r u1 s1 < <(awk '{print $14, $15}' /proc/$server/stat)
    (cd "$HERE" && OMP_NUM_THREADS=1 $PY -m benchmarks.load_test --url "http://127.0.0.1:$PORT" --voters 50 \
       --votes-per-voter 4 --repeat 2 --database-url "sqlite:///$data/s.db" --out "$data/report.json" > /dev/null 2>&1)
    read -r u2 s2 < <(awk '{print $14, $15}' /proc/$server/stat)
    ticks=$(getconf CLK_TCK)
    echo "$side $(cd "$HERE" && $PY -c "import json,sys; r=json.load(open(sys.argv[1]))['repeats']; print('votes/s', ' '.join(str(x['votes_per_s']) for x in r), 'ok' if all(x['ok'] for x in r) else 'NOT OK')" "$data/report.json") server CPU per round $(( (u2 - u1 + s2 - s1) * 1000 / ticks / 400 )) ms"
    kill $server; wait $server 2>/dev/null
  done
done
