#!/usr/bin/env bash
# GPU check of the ai.robe CUDA kernels, one command on a machine with an NVIDIA GPU, nvcc and PyTorch:
#   bash kernels/gpu_check.sh            (results also go to $OUT when it is set)
# 1. every kernel bit-exact against kernels/reference, and the timings (python -m kernels.gpu_check);
# 2. compute-sanitizer memcheck over the small checks when it is installed (no out-of-bounds access);
# 3. the result table, printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULTS=${OUT:-build/gpu_check}
status=0
echo "== checks and timings =="
"$PY" -m kernels.gpu_check "$@"
rc=$?
[ $rc -eq 2 ] && exit 2  # no GPU or no PyTorch: the message says which
[ $rc -ne 0 ] && status=1
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$sanitizer" ]; then
  echo "== compute-sanitizer memcheck (small checks, ctypes bridge) =="
  log=$RESULTS/gpu_check_sanitizer.log
  timeout 300 "$sanitizer" --tool memcheck --error-exitcode 3 --log-file "$log" \
    "$PY" -m kernels.gpu_check --quick --no-timing --no-report --backend ctypes >/dev/null
  rc=$?
  tail -n 2 "$log"
  case $rc in
    0) echo "memcheck: clean" | tee -a "$RESULTS/gpu_check.md" ;;
    124) echo "memcheck: timed out after 300 s (not counted)" | tee -a "$RESULTS/gpu_check.md" ;;
    *) echo "memcheck: FAILED (exit $rc, see $log)" | tee -a "$RESULTS/gpu_check.md"; status=1 ;;
  esac
else
  echo "memcheck: skipped (compute-sanitizer not found)" >> "$RESULTS/gpu_check.md"
fi
echo
cat "$RESULTS/gpu_check.md"
exit $status
