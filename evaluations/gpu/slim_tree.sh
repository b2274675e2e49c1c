#!/usr/bin/env bash
# The lent GPU machine takes the working tree and the carried folders up to 64 MiB in all. The toy weights
# (checkpoints/, ~40 MiB), the result PNGs and HTML pages and the validation sweeps' records are not needed by the
# full-size scripts, but with them the tree leaves no room for .whl/ and .whl-studio/ (57 MiB together; gradio's
# wheel alone is 30 MiB). Move them aside for the call, then back:
#   bash evaluations/gpu/slim_tree.sh out      # before run(command="bash evaluations/gpu/studio_fullsize.sh", carry=[".whl", ".whl-studio"])
#   bash evaluations/gpu/slim_tree.sh back     # right after it (or: git checkout -- .)
set -eu
cd "$(git rev-parse --show-toplevel)"
HOLD=${HOLD:-/tmp/alignment-studio-slim}
case "${1:-}" in
  out)
    mkdir -p "$HOLD"
    git ls-files -z -- checkpoints '*.png' '*.html' 'evaluations/results/*validation*.json' \
        'evaluations/results/flow_results*.json' | while IFS= read -r -d '' f; do
      [ -f "$f" ] && mkdir -p "$HOLD/$(dirname "$f")" && mv "$f" "$HOLD/$f"
    done
    echo "moved aside to $HOLD: $(find "$HOLD" -type f | wc -l) files; tree now $( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes";;
  back)
    [ -d "$HOLD" ] && cp -a "$HOLD/." . && rm -rf "$HOLD"
    echo "missing tracked files: $(git ls-files --deleted | wc -l)";;
  *) echo "usage: $0 out|back" >&2; exit 2;;
esac
