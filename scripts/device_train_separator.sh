#!/usr/bin/env bash
# Train podsep's separator further on a lent GPU machine, inside one device call.
#
# That machine has no ../shared, no soundfile and takes 64 MiB of files, so prepare here first:
#   python scripts/train_separator.py --pack runs/packed          # corpora at 8 kHz, about 46 MB
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       soundfile==0.13.1 cffi==2.0.0 pycparser==2.23
# then call the device tool with
#   command: bash scripts/device_train_separator.sh 7
#   carry:   ["runs/packed", ".whl"]           (add "runs/separator-gpu" to resume a checkpoint)
# and copy what comes back into runs/separator-gpu/ (checkpoint.pt, log.json, snapshots/).
#
# Without a checkpoint in RUN_DIR the run starts from the shipped weights
# (podsep/data/separator.pt, --init-from, a fresh Adam) at their recorded step. It
# warm-restarts the schedule there with a larger batch, sizes the schedule to MINUTES
# from the speed of its first steps (the resolved step count is recorded in the
# checkpoint), mixes batches in WORKERS processes with the shipped recipe's
# augmentations, keeps a checkpoint a minute, and brings back the last KEEP of them as
# weights only (the 64 MiB that come back hold no optimiser states), to be averaged here:
#   python scripts/train_separator.py --run-dir runs/separator-gpu --export ... --average-from N
# INIT_WEIGHTS and PYTHON exist for tests/lab/test_training_recipe.py, which runs this script on the
# CPU with tiny weights (DEVICE=cpu), so that a device session never finds it broken.
set -euo pipefail
MINUTES=${1:-7}
BATCH=${BATCH:-32}
LR=${LR:-2e-4}
STREAM=${STREAM:-9}
KEEP=${KEEP:-5}
RUN_DIR=${RUN_DIR:-runs/separator-gpu}
DATA=${DATA:-runs/packed}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-14}
WHEELS=${WHEELS:-.whl}
AUGMENT=${AUGMENT:---speed-perturbation 0.5 --speed-range wide --channel-eq 0.5 --polarity-flip 0.5}
OUT=${OUT:-$RUN_DIR/out}
INIT_WEIGHTS=${INIT_WEIGHTS:-podsep/data/separator.pt}  # where a run without a checkpoint starts
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT" "$RUN_DIR"
[ -d "$WHEELS" ] && "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
INIT=()
if [ -f "$RUN_DIR/checkpoint.pt" ]; then
    START=$("$PYTHON" -c "import torch; print(torch.load('$RUN_DIR/checkpoint.pt', weights_only=True)['step'])")
else
    START=$("$PYTHON" -c "import torch; print(torch.load('$INIT_WEIGHTS', weights_only=True)['recipe']['steps'])")
    INIT=(--init-from "$INIT_WEIGHTS")
fi
# shellcheck disable=SC2086
"$PYTHON" scripts/train_separator.py --run-dir "$RUN_DIR" --data "$DATA" --device "$DEVICE" "${INIT[@]}" \
    --workers "$WORKERS" --threads 1 --batch "$BATCH" --lr "$LR" --stream "$STREAM" \
    --schedule-start "$START" --warmup 200 --total-steps 10000000 \
    --steps-for-minutes "$MINUTES" --max-minutes "$("$PYTHON" -c "print($MINUTES + 0.75)")" \
    $AUGMENT --snapshot-from "$START" --checkpoint-every 60 2>&1 | tee "$OUT/train.log"
cp "$RUN_DIR/checkpoint.pt" "$RUN_DIR/log.json" "$OUT/"
"$PYTHON" - "$RUN_DIR" "$OUT" "$KEEP" <<'PY'
import sys
from pathlib import Path
import torch
run_dir, out, keep = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for path in sorted((run_dir / "snapshots").glob("step-*.pt"))[-keep:]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    state.pop("optimiser", None)
    torch.save(state, out / path.name)
    print("kept", path.name)
PY
