# syntax=docker/dockerfile:1
# workflow-bridge image: wheels are built in the first stage; the runtime stage installs them only,
# so no compiler, git or pip cache reaches the final image.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg GIT_REVISION="$(git rev-parse HEAD)" \
#     -t workflow-bridge:0.1.0 .
#   docker run --rm -v "$PWD/config.yaml:/etc/bridge/config.yaml:ro" -p 9464:9464 workflow-bridge:0.1.0
#
# VERSION must be pyproject.toml's version (the build fails otherwise); it and GIT_REVISION are
# baked into the image's OCI labels, and GIT_REVISION into BRIDGE_GIT_REVISION for the process.

# Both stages use the same base (pin it by digest, python:3.11-slim@sha256:..., for reproducible builds).
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bridge ./bridge
ARG VERSION=0.1.0
# First: the version the image is labelled with is the version of the package inside it. Then the
# project's wheel plus a wheel for every runtime dependency (all ship manylinux wheels).
RUN python -c "import sys, tomllib; v = tomllib.load(open('pyproject.toml', 'rb'))['project']['version']; \
sys.exit(None if v == sys.argv[1] else f'VERSION={sys.argv[1]} but pyproject.toml says {v}')" "${VERSION}" \
    && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ARG VERSION=0.1.0
ARG GIT_REVISION=unknown
LABEL org.opencontainers.image.title="workflow-bridge" \
      org.opencontainers.image.description="Kafka command bridge to SaaS workflow APIs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV BRIDGE_GIT_REVISION="${GIT_REVISION}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# uid/gid 10001: the Helm chart's securityContext runs the pod as this user.
RUN groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin bridge
# Install from the builder's wheels only (--no-index): the bind mount keeps them out of the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/workflow_bridge-*.whl
USER 10001:10001
EXPOSE 9464
# Kubernetes uses the chart's probes; this serves `docker run` and compose. No curl in slim images,
# so ask python. BRIDGE__OBSERVABILITY__PORT is the bridge's own override of the health port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BRIDGE__OBSERVABILITY__PORT', '9464') + '/healthz', timeout=4)"]
# SIGTERM makes the bridge drain in-flight commands (engine.drain_grace_s) and exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["bridge"]
CMD ["run", "--config", "/etc/bridge/config.yaml"]
