#!/usr/bin/env bash
# The main job on the embedded default (scikit-learn digits), set-up included:
#   1. trains the digits teacher (or reuses runs/demo/teacher if it is already trained),
#   2. distills a student from it without any real training data, with FastDFKD Fast-5,
#   3. prints the teacher's and the student's test accuracy and the synthesis time.
# Outputs under runs/demo/ (override with DEMO_DIR=...). Extra arguments go to the distillation run
# as config overrides, e.g. scripts/demo.sh --config.epochs=20
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
out="${DEMO_DIR:-runs/demo}"
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=2
if [ ! -f "$out/teacher/teacher/meta.json" ]; then
  python -m fastdfkd_jax.main --config=configs/teacher_digits.py --workdir="$out/teacher" \
    --config.progress_bar=False --verbosity=-1
fi
python -m fastdfkd_jax.main --config=configs/dfkd_digits.py:fast5 --workdir="$out/dfkd_fast5" \
  --config.teacher.checkpoint="$out/teacher/teacher" --verbosity=-1 "$@"
python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
teacher = json.load(open(f"{out}/teacher/summary.json"))
student = json.load(open(f"{out}/dfkd_fast5/summary.json"))
print()
print(f"Teacher ({teacher['arch']}) test accuracy:        {100 * teacher['test_accuracy']:.2f}%")
print(f"Student ({student['config']['student']['arch']}) test accuracy, data-free: "
      f"{100 * student['student_test_accuracy']:.2f}%")
print(f"FastDFKD {student['method']}: {student['synthesis_calls']} synthesis calls in "
      f"{student['synthesis_seconds']:.1f} s (compile {student['compile_seconds']:.1f} s, "
      f"KD {student['kd_seconds']:.1f} s, total {student['total_seconds']:.1f} s)")
print(f"Outputs: {out}/dfkd_fast5 (summary.json, metrics.jsonl, samples_*.png)")
PY
