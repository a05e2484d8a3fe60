#!/usr/bin/env bash
# The one prepared call of a session lent a GPU (15 minutes of device time in all, start-up
# included: this runs under 10), in the project's priority order. Each part has its own time
# limit, and each result is written as it finishes, so a part cut off still leaves what it did:
#
#   scripts/gpu_session.sh OUT_DIR
#
# 1. records: the benchmark records the repository lacks, scripts/gpu_records.sh (digits first;
#    OUT_DIR/records_<bench>.tar.gz), GPU_SESSION_RECORDS_S seconds (default 270).
# 2. nayer: NAYER's CIFAR-100 synthesis call (400 images, 40 steps) timed beside Fast-5's (256
#    images, 5 steps), wrn40_2 teacher with random weights (scripts/time_synthesis_calls.py;
#    OUT_DIR/nayer_timing.json), GPU_SESSION_NAYER_S seconds (default 120).
# 3. check: scripts/accelerator_check.sh OUT_DIR/accelerator_check, its parts ACCEL_CHECK_PARTS
#    (default here "timings"), GPU_SESSION_CHECK_S seconds (default 180).
#
# GPU_SESSION_PARTS (default "records nayer check") picks the parts; GPU_SESSION_NAYER_ARG (default
# "cifar100,METHOD,wrn40_2-wrn16_2") is the CIFAR config's argument for the NAYER part (the CPU
# test adds ",runlocal"); GPU_RECORDS_* reach scripts/gpu_records.sh. Carry gpu_bundle/ (made by
# `python scripts/gpu_bundle.py prepare`) for the packages the machine's Python lacks.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/gpu_session.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
py="${PYTHON:-python3}"
parts="${GPU_SESSION_PARTS:-records nayer check}"
export PYTHON="$py" TF_CPP_MIN_LOG_LEVEL=2
export FASTDFKD_CACHE_DIR="${FASTDFKD_CACHE_DIR:-$(mktemp -d)}"
# The packages the machine's Python lacks, once, for every part (scripts/gpu_records.sh then skips it).
if [ -d gpu_bundle/wheels ] && [ ! -f "$out/site/.installed" ]; then
  "$py" scripts/gpu_bundle.py install --dir=gpu_bundle --target="$out/site" >"$out/install.log" 2>&1 \
    || { cat "$out/install.log"; exit 2; }
  touch "$out/site/.installed"
fi
export PYTHONPATH="$PWD:$out/site${PYTHONPATH:+:$PYTHONPATH}"
status=0
run_part() {  # name, seconds, command...: the command's process group gets SIGTERM at the limit
  local name="$1" limit="$2"
  shift 2
  local start=$SECONDS
  timeout --kill-after=20 "$limit" "$@"
  local code=$?
  echo "gpu_session: $name exit $code in $((SECONDS - start)) s"
  [ "$code" = 0 ] || status=1
}

if [[ " $parts " == *" records "* ]]; then
  run_part records "${GPU_SESSION_RECORDS_S:-270}" bash scripts/gpu_records.sh "$out"
fi
if [[ " $parts " == *" nayer "* ]]; then
  arg="${GPU_SESSION_NAYER_ARG:-cifar100,METHOD,wrn40_2-wrn16_2}"
  run_part nayer "${GPU_SESSION_NAYER_S:-120}" "$py" scripts/time_synthesis_calls.py --repeats=5 \
    --out="$out/nayer_timing.json" \
    --variant="fast5=configs/dfkd_cifar.py:${arg//METHOD/fast5}" \
    --variant="nayer=configs/dfkd_cifar.py:${arg//METHOD/nayer}" >"$out/nayer_timing.log" 2>&1
  grep -E "^(fast5|nayer|gpu_session):" "$out/nayer_timing.log"
fi
if [[ " $parts " == *" check "* ]]; then
  # GPU_SESSION_CHECK_ARGS: its flags (the CPU test: --small).
  export ACCEL_CHECK_PARTS="${ACCEL_CHECK_PARTS:-timings}"
  # shellcheck disable=SC2086
  run_part check "${GPU_SESSION_CHECK_S:-180}" \
    bash scripts/accelerator_check.sh "$out/accelerator_check" ${GPU_SESSION_CHECK_ARGS:-}
fi
exit "$status"
