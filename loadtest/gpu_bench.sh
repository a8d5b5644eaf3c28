#!/usr/bin/env bash
# GPU benchmark v2, the fair one (issue 12): ROBE on the device vs full tables in HBM (F.embedding and a
# vectorized gather kernel) and in host RAM (CPU gather + async copy, sequential and double-buffered; UVA
# reads over PCIe), fp32 and bf16 dense parts, batches 512/2048/16384, zipf and uniform ids, CUDA graphs.
#
#   bash loadtest/gpu_bench.sh       # from the repository root; results in $OUT (else build/gpu_bench)
#
# Needs PyTorch with CUDA and nvcc; no network. Finishes in <= 8 minutes on an H200 including its builds: the
# whole script has GPU_BENCH_TOTAL seconds (default 470; every step's limit, kill grace included, fits in it)
#   1. preflight (card, PCIe link, copy bandwidth; also at the top of the JSON)      <= 50 s
#   2. build the gather kernel (nvcc) and the ROBE kernel (kernels.torch_ext)        <= 160 s
#   3. terabyte shape, rows scaled to fit host RAM and HBM (the JSON says the scale): what is left, less 30 s
#      for the report; no new measurement starts after GPU_BENCH_BUDGET s (default 240, less when short)
#   4. report: prints the table and the ratios                                       <= 25 s
# Results are written after every measurement, so a step killed by its limit keeps what it measured.
# v1 of this benchmark (ROBE vs F.embedding in HBM only) was last at commit 3339834; its H200 log (v1 as of
# commit 6c3d4b3) is docs/benchmarks/gpu_bench_v1_h200.log.
# Overrides: GPU_BENCH_SHAPE=terabyte GPU_BENCH_BATCHES=512,2048,16384 GPU_BENCH_IDS=zipf,uniform
# GPU_BENCH_DTYPES=fp32,bf16 GPU_BENCH_BUDGET=240 GPU_BENCH_TOTAL=470 PYTHON=python3
# GPU_BENCH_EXTRA="--device cpu --dry-run" (checks the script without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

PYTHON="${PYTHON:-python3}"
OUT_DIR="${OUT:-build/gpu_bench}"
SHAPE="${GPU_BENCH_SHAPE:-terabyte}"
BATCHES="${GPU_BENCH_BATCHES:-512,2048,16384}"
IDS="${GPU_BENCH_IDS:-zipf,uniform}"
DTYPES="${GPU_BENCH_DTYPES:-fp32,bf16}"
BUDGET="${GPU_BENCH_BUDGET:-240}"
TOTAL="${GPU_BENCH_TOTAL:-470}"
END=$((SECONDS + TOTAL))
read -r -a EXTRA <<< "${GPU_BENCH_EXTRA:-}"
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
mkdir -p "${OUT_DIR}"
rm -f "${OUT_DIR}/gpu_bench.json"
LOG="${OUT_DIR}/gpu_bench.log"

{
  echo "== gpu_bench: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  echo "== 1/4 preflight"
  timeout -k 2 10 nvidia-smi \
    --query-gpu=name,memory.total,pcie.link.gen.current,pcie.link.width.current,driver_version \
    --format=csv 2>&1 || true
  timeout -k 5 30 "${PYTHON}" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)" || true

  echo "== 2/4 build the kernels"
  if [ "${#EXTRA[@]}" -eq 0 ]; then
    timeout -k 5 60 "${PYTHON}" -c "from pathlib import Path; from loadtest.gpu_bench import build_gather; \
print(build_gather(Path('${OUT_DIR}/build')))" || echo "warning: gather kernel build failed (vec/uva skipped)"
    timeout -k 5 90 "${PYTHON}" -c "from kernels import torch_ext; print(torch_ext.load(torch_ext.Backend('auto')).backend)" \
      || echo "warning: ROBE kernel build failed (robe skipped)"
  fi

  limit=$((END - SECONDS - 10 - 30))  # 10 s of kill grace, 30 s kept for the report
  budget=$((BUDGET < limit - 60 ? BUDGET : limit - 60))  # the last measurement started may take a minute
  if [ "${budget}" -lt 10 ]; then
    echo "== 3/4 ${SHAPE}: skipped, only ${limit} s left of GPU_BENCH_TOTAL=${TOTAL}"
  else
    echo "== 3/4 ${SHAPE} (budget ${budget} s, limit ${limit} s)"
    timeout -k 10 "${limit}" "${PYTHON}" -m loadtest.gpu_bench --shape "${SHAPE}" --batches "${BATCHES}" \
      --ids "${IDS}" --dtypes "${DTYPES}" --budget "${budget}" --out "${OUT_DIR}" "${EXTRA[@]}"
    status=$?
    [ "${status}" -eq 0 ] || echo "warning: the run exited with ${status}; its partial results are kept"
  fi

  echo "== 4/4 report ($((SECONDS)) s since the start)"
  timeout -k 5 20 "${PYTHON}" -m loadtest.gpu_bench_report "${OUT_DIR}/gpu_bench.json"
} 2>&1 | tee "${LOG}"
