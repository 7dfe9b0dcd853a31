# syntax=docker/dockerfile:1
# Triton for the mix models: NVIDIA's Triton 2.51 image (24.10, the version CI tests) with what
# the models' Python backend needs. Build from the repository root:
#   docker build -f deploy/docker/triton.Dockerfile -t ghcr.io/mixpilot/mixpilot-triton:0.1.0 .
# The models' model.py runs mixpilot's code (the checkpoint checks and model classes of local
# inference), which needs Python 3.11; this image's own Python is 3.10. So:
#   - Python 3.11 (deadsnakes, built for this Ubuntu 22.04) and a venv with mixpilot and torch;
#   - the Python backend built for Python 3.11 and Triton 2.51 (NVIDIA's nvidia-pytriton wheel,
#     the same backend CI runs), put in its own backend directory by `prepare_backends`;
#   - the venv first on PATH: that is how the backend's stub finds its packages.
# Not built in this project's CI (no Docker there): see deploy/k8s/README.md.
FROM nvcr.io/nvidia/tritonserver:24.10-py3 AS build
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
RUN python3.11 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir torch==2.13.0 nvidia-pytriton==0.7.0 . \
 && /opt/venv/bin/python -c "from pathlib import Path; from services.predictor.triton_server import prepare_backends; prepare_backends(Path('/opt/backends'))"

FROM nvcr.io/nvidia/tritonserver:24.10-py3
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends python3.11 libpython3.11 curl \
 && apt-get purge -y software-properties-common gpg-agent && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/backends /opt/backends
ENV PATH=/opt/venv/bin:$PATH \
    NUMBA_CACHE_DIR=/tmp/numba \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia_pytriton.libs:/opt/tritonserver/lib
USER triton-server
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=20s --timeout=5s --start-period=180s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8000/v2/health/ready"]
ENTRYPOINT ["tritonserver", "--backend-directory=/opt/backends"]
CMD ["--model-repository=/models"]
