#!/usr/bin/env bash
# The accelerator check: one prepared run on a machine with a GPU (or TPU), about 6 minutes on one
# H100, never required by CI. Uses the machine's own Python and its CUDA/TPU-enabled jax as they
# are: nothing is installed (the project's exact CPU pins would replace that jax); the repository
# goes on PYTHONPATH, and a missing module is named before anything runs.
#
#   scripts/accelerator_check.sh OUT_DIR [--small]
#
# 1. The tests whose results could depend on the backend: models, precision, synthesis,
#    evaluation, MARS and the spline conversion (OUT_DIR/tests.log).
# 2. The digits demo: a teacher, then Fast-5 data-free distillation (OUT_DIR/demo/*/summary.json).
# 3. Compiled step timings at CIFAR-10 shapes, wrn40_2 -> wrn16_1, batch 256, random weights: the
#    Fast-5 synthesis call, a KD step, a DeepInversion step, per precision policy, with XLA's FLOP
#    count, the achieved FLOP/s and its fraction of the device's peak (OUT_DIR/timings.json).
# 4. The report: OUT_DIR/accelerator_check.json and OUT_DIR/accelerator_check.md.
# --small times tiny models instead (how tests/fastdfkd_jax/test_benchmark.py tries step 3 on a
# CPU). ACCEL_CHECK_PARTS (default "tests demo timings") picks the parts; each has a time limit,
# and a failed part does not stop the others (the exit status says whether all passed).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/accelerator_check.sh OUT_DIR [--small]}"
shift
mkdir -p "$out"
out="$(cd "$out" && pwd)"
py="${PYTHON:-python3}"
parts="${ACCEL_CHECK_PARTS:-tests demo timings}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2
# The compilation cache of the demo and the timings: a scratch directory, not the user's cache.
export FASTDFKD_CACHE_DIR="${FASTDFKD_CACHE_DIR:-$(mktemp -d)}"

"$py" scripts/accelerator_check.py --part=modules || exit 2
status=0
run_part() {  # name, seconds, command...
  local name="$1" limit="$2"
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@"
  local code=$?
  echo "accelerator_check: $name exit $code in $((SECONDS - start)) s"
  [ "$code" = 0 ] || status=1
}

if [[ " $parts " == *" tests "* ]]; then
  # -o addopts=: the project's own pytest flags are not needed; the suite's conftest sets the
  # tests' precision itself. The tests are compile-bound (host CPU): with pytest-xdist, 8 workers
  # share the accelerator, so none may preallocate its memory (JAX takes 75% of a GPU per process
  # by default). On one H200 (16 cores), 4 workers needed 200 s.
  workers=()
  "$py" -c "import xdist" 2>/dev/null && workers=(-n 8)
  XLA_PYTHON_CLIENT_PREALLOCATE=false run_part tests 200 \
    "$py" -m pytest -q -o addopts= -p no:cacheprovider "${workers[@]}" -m "not slow" \
    tests/fastdfkd_jax/test_models.py tests/fastdfkd_jax/test_precision.py \
    tests/fastdfkd_jax/test_synthesis.py tests/fastdfkd_jax/test_evaluate.py \
    tests/spline/test_mars.py tests/spline/test_convert.py >"$out/tests.log" 2>&1
  tail -n 3 "$out/tests.log"
fi
if [[ " $parts " == *" demo "* ]]; then
  run_part demo 90 bash -c '
    "$0" -m fastdfkd_jax.main --config=configs/teacher_digits.py --workdir="$1/demo/teacher" \
      --config.progress_bar=False --verbosity=-1 &&
    "$0" -m fastdfkd_jax.main --config=configs/dfkd_digits.py:fast5 \
      --workdir="$1/demo/dfkd_fast5" --config.teacher.checkpoint="$1/demo/teacher/teacher" \
      --config.progress_bar=False --verbosity=-1' "$py" "$out"
fi
if [[ " $parts " == *" timings "* ]]; then
  # On one H200 the first four of the six steps (builds, compilations, timed calls) took 110 s.
  run_part timings 180 "$py" scripts/accelerator_check.py --part=timings --out="$out" "$@"
fi
"$py" scripts/accelerator_check.py --part=report --out="$out" || status=1
cat "$out/accelerator_check.md"
exit "$status"
