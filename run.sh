#!/usr/bin/env bash
# Set-up and entry points. Idempotent: installs only what is missing.
#   bash run.sh demo   # simulate a small evaluation set, run the leaderboard, write the table and plots
#   bash run.sh test   # run the test suite
#   bash run.sh train-default  # reproduce the shipped model deblur/models/default.keras (hours on 2 cores)
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v tesseract >/dev/null 2>&1 || need_apt+=(tesseract-ocr tesseract-ocr-eng)
[ -f /usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf ] || need_apt+=(fonts-liberation)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# A virtual environment that can see already-installed system packages (so nothing is fetched twice).
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import deblur, pipelines, eval, tensorflow, pytesseract, tifffile, rapidfuzz, skimage" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch .venv/.installed
fi
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

case "${1:-demo}" in
    demo) shift || true; exec .venv/bin/python -m eval.demo "$@" ;;
    test) shift || true; exec .venv/bin/python -m pytest "$@" ;;
    train-default)
        # The exact recipe of the shipped model (its card, deblur/models/default.json, records the
        # same). Training data seed 1; evaluation sets use seed 9001. Re-running resumes.
        EPOCHS=${EPOCHS:-80}
        .venv/bin/python -m pipelines.simulate --out data/sim-train --steps 0-9 --samples 50 --seed 1
        .venv/bin/python -m pipelines.prepare --data data/sim-train --out data/prep168 --steps 0-9 \
            --in-size 168 --out-size 110 --registration table --val-fraction 0.05 --seed 1
        .venv/bin/python -m deblur.train --data data/prep168 --run-dir runs/default --steps 0-9 \
            --epochs "$EPOCHS" --batch-size 16 --steps-per-epoch 50 --patience 10 --seed 1 \
            --model-dim 16 --model-subdim 16
        exec .venv/bin/python -m deblur.ship --run-dir runs/default --command "EPOCHS=$EPOCHS bash run.sh train-default" ;;
    *) echo "usage: bash run.sh [demo|test|train-default] [args...]" >&2; exit 2 ;;
esac
