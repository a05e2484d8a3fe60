#!/usr/bin/env bash
# The benchmark records the repository still lacks, run on a GPU or TPU machine in priority order,
# each kept as soon as it finishes, so a call cut off by its time limit still leaves every record
# it finished. Never needed by CI or the tests.
#
#   scripts/gpu_records.sh OUT_DIR
#
# Set-up: the machine's own Python and CUDA/TPU jax stay as they are; the pure-Python packages it
# lacks come from gpu_bundle/ (made here by `python scripts/gpu_bundle.py prepare`; carry it) and
# go into OUT_DIR/site, on PYTHONPATH. The repository goes on PYTHONPATH too.
# Order (GPU_RECORDS_ORDER overrides it, "data:method" words): digits Fast-5, DeepInv-2k, CMI-500,
# then its other methods (NAYER among them), then the digits timing pass of the methods with records (timing.json).
# Fashion-MNIST is not in the default order: its loader needs tensorflow-datasets and its files,
# which this bundle does not bring yet (docs/benchmarks.md).
# Output: OUT_DIR/records_<bench>.tar.gz, rewritten after every finished method: the results folder
# results/<bench>/<backend>/ (<method>/seed<k>/summary.json and metrics.jsonl, timing.json), the
# records already in the repository included (they are reused, not run again). Unpack it at the
# repository root: `tar -xzf records_bench_digits.tar.gz`. GPU records run at the config's precision
# policy (TF32 matmuls): they say device and precision, and sit apart from the CPU's (their own
# backend folder). GPU_RECORDS_STORED (default results) is the folder whose records are reused; the
# CPU test points it at an absent one (no stored records), since on CPU the repository's twelve
# records share the backend and the timing pass would rerun them all at its sizes.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/gpu_records.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
py="${PYTHON:-python3}"
export TF_CPP_MIN_LOG_LEVEL=2
export FASTDFKD_CACHE_DIR="${FASTDFKD_CACHE_DIR:-$(mktemp -d)}"
if [ -d gpu_bundle/wheels ] && [ ! -f "$out/site/.installed" ]; then  # once per OUT_DIR
  "$py" scripts/gpu_bundle.py install --dir=gpu_bundle --target="$out/site" >"$out/install.log" 2>&1 \
    || { cat "$out/install.log"; exit 2; }
  touch "$out/site/.installed"
fi
export PYTHONPATH="$PWD:$out/site${PYTHONPATH:+:$PYTHONPATH}"
"$py" scripts/accelerator_check.py --part=modules || exit 2
backend="$("$py" -c 'import jax; print(jax.default_backend())')"
order="${GPU_RECORDS_ORDER:-digits:fast5 digits:deepinv2k digits:cmi500 digits:dafl digits:zskt \
digits:dfq digits:nayer digits:fast2 digits:fast10 digits:fast5_sequential \
digits:fast5_independent digits:fast5_exact digits:timing}"
workdir="$out/work"
status=0

pack() {  # bench: the results folder into OUT_DIR/records_<bench>.tar.gz, atomically
  local bench="$1"
  tar -czf "$out/.records_$bench.tmp" -C "$out" "results/$bench" && \
    mv "$out/.records_$bench.tmp" "$out/records_$bench.tar.gz"
}

for item in $order; do
  data="${item%%:*}" method="${item#*:}" bench="bench_${item%%:*}"
  results="$out/results/$bench/$backend"
  if [ ! -d "$results" ]; then  # the repository's records of this backend: reused, not rerun
    mkdir -p "$results"
    stored_dir="${GPU_RECORDS_STORED:-results}/$bench/$backend"
    [ -d "$stored_dir" ] && cp -r "$stored_dir/." "$results/"
  fi
  args=(--config="configs/$bench.py${GPU_RECORDS_VARIANT:-}" --workdir="$workdir/$bench"
        --config.progress_bar=False --config.results_dir="$out/results/$bench/{backend}")
  if [ "$method" = timing ]; then  # the timing pass over the methods that have records
    stored="$(cd "$results" && for m in */; do [ -f "$m/seed0/summary.json" ] && printf '"%s",' "${m%/}"; done)"
    [ -n "$stored" ] || { echo "gpu_records: no record to time"; continue; }
    args+=(--config.methods="($stored)" --config.cost_g_steps='()')
  else
    args+=(--config.methods="(\"$method\",)" --config.runs_only=True)
  fi
  start=$SECONDS
  # GPU_RECORDS_ARGS: more flags for every call (the CPU test: a tiny teacher, runlocal sizes).
  # shellcheck disable=SC2086
  "$py" scripts/bench_acceleration.py "${args[@]}" ${GPU_RECORDS_ARGS:-} >"$out/$data.$method.log" 2>&1
  code=$?
  echo "gpu_records: $data $method exit $code in $((SECONDS - start)) s"
  [ "$code" = 0 ] || { status=1; tail -n 5 "$out/$data.$method.log"; }
  pack "$bench"
done
exit "$status"
