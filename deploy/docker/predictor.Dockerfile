# syntax=docker/dockerfile:1
# The predictor service. Build from the repository root:
#   docker build -f deploy/docker/predictor.Dockerfile -t ghcr.io/mixpilot/mixpilot-predictor:0.1.0 .
# Stage 1 builds the package and its dependencies into a venv (torch from the CPU-only index:
# the models run on Triton or on CPU; the CUDA wheels would add 4 GB); stage 2 is the runtime.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
RUN /opt/venv/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && /opt/venv/bin/pip install --no-cache-dir . \
 && find /opt/venv -name "__pycache__" -prune -exec rm -rf {} +

FROM python:3.11.11-slim-bookworm
RUN groupadd --gid 10001 mixpilot && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin mixpilot
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/tmp/numba MIXPILOT_HOST=0.0.0.0
USER 10001:10001
EXPOSE 50052 9100
HEALTHCHECK --interval=20s --timeout=5s --start-period=120s --retries=3 CMD ["mixpilot", "healthcheck", "predictor"]
ENTRYPOINT ["mixpilot"]
CMD ["predictor"]
