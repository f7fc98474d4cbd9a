#!/bin/bash
# The GPU figures of docs/results.md's *Training at scale*, in one run on one GPU machine (about 8 minutes on an H200
# with 16 cores): ViT training throughput on the GPU, and the training loader's scans/s with 1, 8 and all-but-one
# cores. Both need synthetic trees of scans, built here from SOURCE (a folder of class folders of real scans).
#
#     bash benchmarks/gpu_figures.sh SOURCE BASE [WORK]
#
# BASE: the ViT's base checkpoint, a folder or Hub id; only its config and processor are read (the weights are
# random: speed does not depend on them). WORK (default: a new temporary folder) gets the trees (about 5 GB).
# Env: TRAIN_SCANS (30000), SMALL_SCANS (3000, for the 1-worker runs), BATCH (256), STEPS (30),
# WORKERS (the cores less one).
set -euo pipefail
usage() { sed -n '2,11p' "$0" | cut -c3-; }
if [[ ${1-} == -h || ${1-} == --help ]]; then usage; exit 0; fi
if [[ $# -lt 2 ]]; then usage >&2; exit 2; fi
SOURCE=$1 BASE=$2 WORK=${3:-$(mktemp -d -t gpu-figures-XXXX)}
WORKERS=${WORKERS:-$(($(nproc) - 1))} BATCH=${BATCH:-256} STEPS=${STEPS:-30}
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
step() { echo "=== $(date +%T) $*"; }

gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')")
step "machine: $(nproc) cores; $gpu"
step "synthetic trees in $WORK"
python3 benchmarks/synthetic_dataset.py --source "$SOURCE" --out "$WORK/big" --train "${TRAIN_SCANS:-30000}" \
  --val 32 --test 32 | tail -1
python3 benchmarks/synthetic_dataset.py --source "$SOURCE" --out "$WORK/small" --train "${SMALL_SCANS:-3000}" \
  --val 32 --test 32 | tail -1
# The loader runs load a model (the trainer's first steps), so they get BASE's architecture with random weights too.
python3 -c "import sys; from benchmarks.vit_throughput import random_init; random_init(*sys.argv[1:])" \
  "$BASE" "$WORK/random-base"

throughput() {
  step "training throughput: $*"
  python3 benchmarks/vit_throughput.py --data "$WORK/big" --split-file "$WORK/big-split.json" \
    --batch-size "$BATCH" --steps "$STEPS" --workers "$WORKERS" "$@"
}
loader() { # TREE WORKERS AUGMENT_AT: one epoch of the tree's training scans, no model
  step "data loading: $1 tree, $2 workers, augmented at the $3"
  local run="$WORK/loading-$1-$2-$3"  # its stderr (the load report, warnings) is shown only if the run fails
  if ! python3 -m train --data "$WORK/$1" --split-file "$WORK/$1-split.json" --base-model "$WORK/random-base" \
    --out "$run" --workers "$2" --batch-size 64 --data-loading-only --augment-at "$3" 2>"$run.log" | tail -1; then
    cat "$run.log" >&2
    return 1
  fi
}

throughput --base-model "$BASE" --random-init --augment-at input
loader big "$WORKERS" input
loader big "$WORKERS" scan
loader small 1 input
loader small 1 scan
loader big 8 input
throughput --random-vit-base --augment-at input
throughput --base-model "$BASE" --random-init --augment-at scan
step done
