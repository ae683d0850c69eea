#!/usr/bin/env bash
# Set-up and entry points. Idempotent: installs only what is missing.
#   bash run.sh demo   # simulate a small evaluation set, run the leaderboard, write the table and plots
#   bash run.sh test   # run the test suite
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
    *) echo "usage: bash run.sh [demo|test] [args...]" >&2; exit 2 ;;
esac
