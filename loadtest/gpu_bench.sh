#!/usr/bin/env bash
# GPU benchmark of ROBE-Z vs full tables: the same DLRM in PyTorch on one NVIDIA GPU (H100 or H200).
#
#   bash loadtest/gpu_bench.sh            # from the repository root; results in $OUT (else build/gpu_bench)
#
# Needs: PyTorch with CUDA, nvcc (for the ROBE kernel; without it ROBE runs as PyTorch ops, labelled so).
# No network, nothing installed, nothing large written to disk: the tables are created on the GPU.
# Steps, each in its own process and time limit, so one failure keeps the other results:
#   1. build the ROBE CUDA kernel (kernels.torch_ext: PyTorch extension, else ctypes; GPU_BENCH_BACKEND=ctypes
#      skips the extension, whose compile takes a minute on a fresh machine)
#   2. terabyte shape (96 GB of tables on an H200; rows scaled to fit an H100, and the report says so)
#   3. kaggle shape (2.16 GB of tables)
#   4. report: merges the JSON files and prints the ratio table last
# Typical run: 2-3 minutes (less when the kernel is already built in build/torch_ext); worst case, every
# step hitting its limit, 6.5 minutes (build 150 s + ctypes 90 s + terabyte 150 s + kaggle 100 s).
# Overrides: GPU_BENCH_SHAPES="terabyte kaggle", GPU_BENCH_BATCHES=512,1024,2048,4096,8192,16384,
# GPU_BENCH_IDS=zipf,uniform, GPU_BENCH_BACKEND=auto, PYTHON=python3; GPU_BENCH_EXTRA="--device cpu --dry-run" checks the
# script itself on a machine without a GPU (tests/loadtest).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

PYTHON="${PYTHON:-python3}"
OUT_DIR="${OUT:-build/gpu_bench}"
SHAPES="${GPU_BENCH_SHAPES:-terabyte kaggle}"
BATCHES="${GPU_BENCH_BATCHES:-512,1024,2048,4096,8192,16384}"
IDS="${GPU_BENCH_IDS:-zipf,uniform}"
BACKEND="${GPU_BENCH_BACKEND:-auto}"
read -r -a EXTRA <<< "${GPU_BENCH_EXTRA:-}"
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
mkdir -p "${OUT_DIR}"
rm -f "${OUT_DIR}"/gpu_bench_*.json  # report merges every shape file it finds: start clean
LOG="${OUT_DIR}/gpu_bench.log"

BENCH=("${PYTHON}" -m loadtest.gpu_bench)

{
  echo "== gpu_bench: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv 2>&1 || true
  "${PYTHON}" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
  command -v nvcc >/dev/null && nvcc --version | tail -n 2

  echo "== 1/4 build the ROBE CUDA kernel"
  KERNEL_FLAG=(--no-kernel)
  if timeout -k 10 150 "${BENCH[@]}" build --backend "${BACKEND}" --out "${OUT_DIR}" "${EXTRA[@]}"; then
    KERNEL_FLAG=(--backend "${BACKEND}")
  elif timeout -k 10 90 "${BENCH[@]}" build --backend ctypes --out "${OUT_DIR}" "${EXTRA[@]}"; then
    KERNEL_FLAG=(--backend ctypes)
  else
    echo "warning: the ROBE CUDA kernel did not build: ROBE is measured as PyTorch ops only"
  fi

  step=2
  for shape in ${SHAPES}; do
    case "${shape}" in terabyte) limit=150 budget=90 ;; *) limit=100 budget=60 ;; esac
    echo "== ${step}/4 ${shape} (limit ${limit} s)"
    timeout -k 10 "${limit}" "${BENCH[@]}" run --shape "${shape}" --batches "${BATCHES}" --ids "${IDS}" \
      --budget "${budget}" --out "${OUT_DIR}" "${KERNEL_FLAG[@]}" "${EXTRA[@]}"
    status=$?
    [ "${status}" -eq 0 ] || echo "warning: ${shape} exited with ${status}; its partial results are kept"
    step=$((step + 1))
  done

  echo "== 4/4 report (${OUT_DIR}/gpu_bench.json)"
  "${PYTHON}" -m loadtest.gpu_report --out "${OUT_DIR}"
} 2>&1 | tee "${LOG}"
