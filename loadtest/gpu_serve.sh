#!/usr/bin/env bash
# The served GPU path (issue 12): dlrm-robe on the device vs dlrm-full in hybrid placement (tables in host
# memory, lookups on the CPU provider, the rest on the GPU), one service on onnxruntime-gpu 1.31 with the
# ai.robe CUDA library, driven by the project's load generator; the ratio comes from /metrics.
#
#   bash loadtest/gpu_serve.sh         # from the repository root; results in $OUT (else build/gpu_serve)
#
# onnxruntime-gpu: the machine has torch (CUDA 13) and the CPU onnxruntime; onnxruntime-gpu 1.31 is
# installed without network into a private target directory, never over the CPU wheel:
#   ORT_GPU_SITE=/tmp/site          where it goes (reused when it already holds onnxruntime-gpu)
#   ORT_GPU_WHEEL=path.whl          a whole wheel, or
#   ORT_GPU_WHEEL_PARTS='glob'      the parts of a split wheel, concatenated in name order
# The CUDA libraries come from torch's nvidia-* wheels: the service imports onnxruntime after calling
# onnxruntime.preload_dlls() (loadtest/gpu_serve.py's launcher), the checks import torch first.
# Steps and limits (total <= 8 min on an H200):
#   1. onnxruntime-gpu + providers (60 s)   2. the ai.robe library (built here when missing; 180 s)
#   3. CUDA custom-op bit-exactness through onnxruntime's CUDA provider (tests/kernels/ort_gpu_fallback.py; 60 s)
#   4. export both models at the terabyte shape, rows x${SERVE_ROWS_SCALE:-0.1} (random weights; 120 s)
#   5. serve and drive: robe full full robe, ${SERVE_SECONDS:-20} s each (limit 240 s)
# SERVE_DRY_RUN=1: tiny shape, CPU provider, the CPU onnxruntime (checks this script without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

PYTHON="${PYTHON:-python3}"
OUT_DIR="${OUT:-build/gpu_serve}"
SITE="${ORT_GPU_SITE:-/tmp/site}"
SCALE="${SERVE_ROWS_SCALE:-0.1}"
SECONDS_PER_PHASE="${SERVE_SECONDS:-20}"
DRY="${SERVE_DRY_RUN:-0}"
mkdir -p "${OUT_DIR}"
LOG="${OUT_DIR}/gpu_serve.log"
status=0

{
  echo "== gpu_serve: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  if [ "${DRY}" = "1" ]; then
    echo "== dry run: tiny shape, CPU provider, the environment's own onnxruntime"
    export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
    DRIVE=(--dry-run)
  else
    echo "== 1/5 onnxruntime-gpu into ${SITE}"
    if [ ! -d "${SITE}/onnxruntime/capi" ] || ! ls "${SITE}"/onnxruntime_gpu-*.dist-info >/dev/null 2>&1; then
      wheel="${ORT_GPU_WHEEL:-}"
      if [ -z "${wheel}" ] && [ -n "${ORT_GPU_WHEEL_PARTS:-}" ]; then
        # shellcheck disable=SC2086,SC2012  # the glob is meant to expand; part names have no spaces
        parts=$(ls ${ORT_GPU_WHEEL_PARTS} 2>/dev/null | sort)
        [ -n "${parts}" ] || { echo "error: no file matches ORT_GPU_WHEEL_PARTS=${ORT_GPU_WHEEL_PARTS}"; exit 2; }
        first=$(basename "$(echo "${parts}" | head -n 1)")
        wheel="/tmp/${first%%.whl*}.whl"
        # shellcheck disable=SC2086
        cat ${parts} > "${wheel}"
      fi
      [ -n "${wheel}" ] || { echo "error: set ORT_GPU_WHEEL or ORT_GPU_WHEEL_PARTS (onnxruntime-gpu 1.31.x)"; exit 2; }
      timeout -k 5 60 "${PYTHON}" -m pip install --quiet --no-index --no-deps --target "${SITE}" "${wheel}" \
        || { echo "error: pip could not install ${wheel}"; exit 2; }
    fi
    export PYTHONPATH="${SITE}:${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
    timeout -k 5 60 "${PYTHON}" -c "import torch, onnxruntime as ort; print('torch', torch.__version__, \
'onnxruntime', ort.__version__, ort.get_available_providers())" || { echo "error: onnxruntime-gpu does not import"; exit 2; }
    missing=$("${PYTHON}" -c "import importlib.util as u; print(' '.join(m for m in ('fastapi', 'uvicorn', \
'pydantic_settings', 'prometheus_client', 'onnx', 'onnxscript', 'httpx') if u.find_spec(m) is None))")
    [ -z "${missing}" ] || { echo "error: missing Python modules: ${missing} (add a site directory to PYTHONPATH)"; exit 2; }

    echo "== 2/5 the ai.robe library (CUDA)"
    library=$(timeout -k 5 180 "${PYTHON}" -c "import kernels; print(kernels.library_path())" 2>/dev/null | tail -n 1)
    if [ ! -f "${library}" ]; then
      timeout -k 5 180 "${PYTHON}" -m kernels.build || { echo "error: the ai.robe library did not build"; exit 2; }
      library=$("${PYTHON}" -c "import kernels; print(kernels.library_path())" | tail -n 1)
    fi
    echo "library ${library}"

    echo "== 3/5 CUDA custom ops bit-exact through onnxruntime's CUDA provider"
    timeout -k 5 60 "${PYTHON}" -c "import torch, runpy, sys; sys.argv = ['ort_gpu_fallback', '${library}']; \
runpy.run_path('tests/kernels/ort_gpu_fallback.py', run_name='__main__')" | tee "${OUT_DIR}/ort_cuda_ops.json"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "warning: the custom-op check failed"; status=1; }
    DRIVE=(--shape terabyte --rows-scale "${SCALE}" --seconds "${SECONDS_PER_PHASE}")
  fi

  echo "== 4/5 export dlrm-robe and dlrm-full (random weights)"
  timeout -k 10 300 "${PYTHON}" -m loadtest.gpu_serve prepare --work-dir "${OUT_DIR}" "${DRIVE[@]}" \
    || { echo "error: export failed"; exit 2; }

  echo "== 5/5 serve and drive"
  timeout -k 10 300 "${PYTHON}" -m loadtest.gpu_serve drive --work-dir "${OUT_DIR}" "${DRIVE[@]}" || status=1
  [ -f "${OUT_DIR}/gpu_serve.md" ] && cat "${OUT_DIR}/gpu_serve.md"
  exit "${status}"
} 2>&1 | tee "${LOG}"
exit "${PIPESTATUS[0]}"
