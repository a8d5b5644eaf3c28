# syntax=docker/dockerfile:1
# robeserve inference image: onnxruntime-gpu + the ai.robe custom-op library built with CUDA.
#
#   docker build -t robeserve:0.1.0 .                                      # models mounted at run time
#   docker run --gpus all -p 8000:8000 -v "$PWD/models:/models:ro" robeserve:0.1.0
#   docker build -t robeserve:0.1.0-models --build-arg MODELS=baked .       # ./models copied in
# (docs/deploy.md has compose and Kubernetes.)
#
# Stages: `builder` compiles the library (nvcc from pinned pip wheels, ORT headers as DESIGN.md
# section 4 says), `runtime` holds Python, onnxruntime-gpu with its CUDA/cuDNN pip extras and the
# service source: no torch, no compiler. The final stage is `image-mounted` or `image-baked`.

ARG PYTHON_IMAGE=python:3.11-slim-trixie
ARG MODELS=mounted

FROM ${PYTHON_IMAGE} AS builder
ARG CUDA_WHEELS="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# g++ is nvcc's host compiler. kernels.build fetches the ORT headers package with apt-get download into
# its own apt state directory, from this image's Debian trixie mirror.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++=4:14.2.* cmake=3.31.* ninja-build=1.12.* \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv /opt/build-venv \
    && /opt/build-venv/bin/pip install --no-cache-dir ${CUDA_WHEELS} \
    && ln -s "$(echo /opt/build-venv/lib/python3*/site-packages/nvidia/cu13)" /opt/cuda \
    && ln -s lib /opt/cuda/lib64 \
    && ln -s libcudart.so.13 /opt/cuda/lib/libcudart.so
# The pip wheels lay CUDA out as nvidia/cu13/{bin,include,lib}; the two links give CMake's FindCUDAToolkit
# the lib64/ and libcudart.so it looks for.
ENV CUDA_HOME=/opt/cuda \
    PATH=/opt/cuda/bin:/opt/build-venv/bin:${PATH}
COPY kernels/ kernels/
RUN nvcc --version \
    && python -m kernels.build --cuda on \
    && python -c "import kernels; print(kernels.library_path())"

FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
LABEL org.opencontainers.image.title="robeserve" \
      org.opencontainers.image.description="ROBE-Z / LMA compressed DLRM and NObLe inference service (onnxruntime-gpu)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1
COPY deploy/requirements-gpu.txt /tmp/requirements-gpu.txt
RUN pip install --no-cache-dir -r /tmp/requirements-gpu.txt \
    && rm /tmp/requirements-gpu.txt \
    && useradd --uid "${UID}" --user-group --no-create-home --shell /usr/sbin/nologin robeserve \
    && mkdir -p /models \
    && chown robeserve:robeserve /models
WORKDIR /app
COPY kernels/ kernels/
COPY service/ service/
COPY --from=builder /src/build/kernels/ build/kernels/
USER ${UID}:${UID}
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2).status != 200)"]
CMD ["python", "-m", "service", "--repository", "/models", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime AS image-mounted

FROM runtime AS image-baked
COPY --chown=robeserve:robeserve models/ /models/

# hadolint ignore=DL3006
FROM image-${MODELS}
