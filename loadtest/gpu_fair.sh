#!/usr/bin/env bash
# Fair GPU benchmark (issue 12): ROBE on the device vs full tables in HBM (F.embedding and a vectorized
# gather kernel) and in host RAM (CPU gather + async copy, sequential and double-buffered; UVA reads over
# PCIe), fp32 and bf16 dense parts, batches 512/2048/16384, zipf and uniform ids, CUDA graphs.
#
#   bash loadtest/gpu_fair.sh        # from the repository root; results in $OUT (else build/gpu_fair)
#
# Needs PyTorch with CUDA and nvcc; no network. Finishes in <= 8 minutes on an H200 including its builds:
#   1. preflight (card, PCIe link, copy bandwidth; also at the top of the JSON)      <= 30 s
#   2. build the gather kernel (nvcc) and the ROBE kernel (kernels.torch_ext)        <= 120 s
#   3. terabyte shape, rows scaled to fit host RAM and HBM (the JSON says the scale)  <= 300 s (budget 240 s)
#   4. report: prints the table and the ratios                                       <= 20 s
# Results are written after every measurement, so a step killed by its limit keeps what it measured.
# Overrides: FAIR_SHAPE=terabyte FAIR_BATCHES=512,2048,16384 FAIR_IDS=zipf,uniform FAIR_DTYPES=fp32,bf16
# FAIR_BUDGET=240 PYTHON=python3 FAIR_EXTRA="--device cpu --dry-run" (checks the script without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

PYTHON="${PYTHON:-python3}"
OUT_DIR="${OUT:-build/gpu_fair}"
SHAPE="${FAIR_SHAPE:-terabyte}"
BATCHES="${FAIR_BATCHES:-512,2048,16384}"
IDS="${FAIR_IDS:-zipf,uniform}"
DTYPES="${FAIR_DTYPES:-fp32,bf16}"
BUDGET="${FAIR_BUDGET:-240}"
read -r -a EXTRA <<< "${FAIR_EXTRA:-}"
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
mkdir -p "${OUT_DIR}"
rm -f "${OUT_DIR}/gpu_fair.json"
LOG="${OUT_DIR}/gpu_fair.log"

{
  echo "== gpu_fair: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  echo "== 1/4 preflight"
  nvidia-smi --query-gpu=name,memory.total,pcie.link.gen.current,pcie.link.width.current,driver_version \
    --format=csv 2>&1 || true
  timeout -k 5 30 "${PYTHON}" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)" || true

  echo "== 2/4 build the kernels"
  if [ "${#EXTRA[@]}" -eq 0 ]; then
    timeout -k 5 60 "${PYTHON}" -c "from pathlib import Path; from loadtest.gpu_fair import build_gather; \
print(build_gather(Path('${OUT_DIR}/build')))" || echo "warning: gather kernel build failed (vec/uva skipped)"
    timeout -k 5 90 "${PYTHON}" -c "from kernels import torch_ext; print(torch_ext.load(torch_ext.Backend('auto')).backend)" \
      || echo "warning: ROBE kernel build failed (robe skipped)"
  fi

  echo "== 3/4 ${SHAPE} (budget ${BUDGET} s, limit $((BUDGET + 60)) s)"
  timeout -k 10 $((BUDGET + 60)) "${PYTHON}" -m loadtest.gpu_fair --shape "${SHAPE}" --batches "${BATCHES}" \
    --ids "${IDS}" --dtypes "${DTYPES}" --budget "${BUDGET}" --out "${OUT_DIR}" "${EXTRA[@]}"
  status=$?
  [ "${status}" -eq 0 ] || echo "warning: the run exited with ${status}; its partial results are kept"

  echo "== 4/4 report"
  timeout -k 5 20 "${PYTHON}" -m loadtest.gpu_fair_report "${OUT_DIR}/gpu_fair.json"
} 2>&1 | tee "${LOG}"
