#!/usr/bin/env bash
# The headline re-run behind results/core-fashion-mnist (issue 23): the default study's six
# variants tuned with 3 repeats x 30 trials and a 3-seed selection, then compared default vs
# tuned over 20 seeds, recorded in the store that ships with results/ (results/runs). Every
# step resumes: rerun this script after an interruption and only what is missing is trained.
#
#   results/rerun-default.sh [COMMIT]     # default: the commit the runs so far were made at
#
# The runs are made from a clean worktree of COMMIT (so every run records that commit and a
# clean tree), with the repository's .venv; ../shared/data holds the datasets.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
commit=${1:-f0b38d9}
tree=${BENCH_RUN_TREE:-/tmp/bench-run-$commit}
runs=$repo/results/runs
# A fresh machine: the live store starts from the last shipped snapshot (its artifact paths
# pointed here); runs it shows RUNNING were cut off and are closed and redone on resume.
if [ ! -f "$runs/mlflow.db" ] && [ -f "$repo/results/shipped/mlflow.db" ]; then
  mkdir -p "$runs" && cp -r "$repo/results/shipped/." "$runs/"
  "$repo/.venv/bin/python" -c "import sys; from pathlib import Path; from bench.store.shipped import relocate; \
relocate(Path(sys.argv[1]) / 'mlflow.db', Path(sys.argv[1]))" "$runs"
fi
[ -d "$tree" ] || git -C "$repo" worktree add --detach "$tree" "$commit"
test -z "$(git -C "$tree" status --porcelain)" || { echo "error: $tree is not clean" >&2; exit 1; }
cd "$tree"
bench() { PYTHONPATH="$tree" "$repo/.venv/bin/python" -m bench "$@"; }
common=(--data-dir "$repo/../shared/data" --tracking-uri "sqlite:///$runs/mlflow.db")
bench tune "${common[@]}" --no-model >> "$runs/tune-default.log" 2>&1
bench compare "${common[@]}" --tuned --seeds 20 --no-model >> "$runs/compare-default.log" 2>&1
