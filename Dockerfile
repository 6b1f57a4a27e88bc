# syntax=docker/dockerfile:1
# One image for every kaptain-warden component: `serve` (the admission server), `sweeper`, and
# `certs` (the chart's TLS bootstrap, sidecar and pre-delete hook). Build: docker build -t kaptain-warden .

# Pinned to a patch release; bump deliberately (and the chart's appVersion with it).
ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm

# ---- build: install the project and its dependencies into a virtual environment ----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Every dependency ships manylinux wheels (cryptography, orjson): no compiler is needed, and
# none is in either stage.
RUN python -m venv /opt/kaptain-warden
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/kaptain-warden/bin/pip install --no-cache-dir --only-binary=:all: --no-binary=kaptain-warden . \
    # The root filesystem is read-only at run time: compile the bytecode now.
    && /opt/kaptain-warden/bin/python -m compileall -q /opt/kaptain-warden

# ---- run: the virtual environment, a non-root numeric user, nothing else --------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kaptain-warden" \
      org.opencontainers.image.description="Owner and TTL stamping, validation and cleanup for the objects the Kaptain ML SDK creates" \
      org.opencontainers.image.licenses="Apache-2.0"
# UID/GID 10001 is the chart's podSecurityContext.runAsUser/runAsGroup (a test keeps them equal):
# numeric, so `runAsNonRoot: true` can be verified by the kubelet without reading /etc/passwd.
RUN groupadd --system --gid 10001 warden \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin warden
COPY --from=build /opt/kaptain-warden /opt/kaptain-warden
ENV PATH=/opt/kaptain-warden/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8443 8081 9090
# Exec form: `kaptain-warden` is PID 1 and gets SIGTERM itself (no shell in between); for
# `serve` it is the gunicorn arbiter, which drains and reaps its worker processes.
ENTRYPOINT ["kaptain-warden"]
CMD ["--help"]
