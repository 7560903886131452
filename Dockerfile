# grok-proxy: docker build -t grok-proxy . && docker run -p 8000:8000 grok-proxy
#
# The base is pinned by Debian codename, so a rebuild never moves to the next Debian release
# by surprise. For byte-identical rebuilds pin its digest as well:
#   docker build --build-arg BASE_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
# Without Docker Hub, any Debian bookworm image with python3.11 and pip will do:
# deploy/docker/base-image.sh assembles one from Debian's packages (docs/deployment.md).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Build stage: resolve the locked dependencies into a virtual environment.
FROM ${BASE_IMAGE} AS build
# UV_SYSTEM_CERTS: uv trusts the image's certificate store instead of its built-in roots,
# so a company or egress-proxy CA added to the base is honoured. PIP_BREAK_SYSTEM_PACKAGES:
# Debian's own python refuses `pip install` outside a virtual environment; this stage is
# thrown away, so uv may go there.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_SYSTEM_CERTS=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
# Dependencies first, from the lock alone: only a change to it re-downloads them.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project
# The project itself (the README is its package description).
COPY README.md ./
COPY src ./src
RUN uv sync --locked --no-dev --no-editable

# Runtime stage: the environment only, run by an unprivileged user with its own group.
FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 grok \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin grok
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
# HOST/PORT/WORKERS configure `grok-proxy serve` (docker run -e PORT=9000 ...).
# SHUTDOWN_GRACE_SECONDS stays under `docker stop`'s 10 s, so streams still open at the end
# of the drain get their error event before Docker's SIGKILL. For longer drains raise both:
#   docker run --stop-timeout 330 -e SHUTDOWN_GRACE_SECONDS=300 ...
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json \
    HOST=0.0.0.0 \
    PORT=8000 \
    WORKERS=1 \
    SHUTDOWN_GRACE_SECONDS=8
USER 10001:10001
EXPOSE 8000
# gRPC for xAI's own SDK (GROK_PROXY_GRPC_PORT)
EXPOSE 8001
# Probes where the server really listens (its flags, else HOST/PORT), never via HTTP_PROXY.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-m", "grok_proxy.healthcheck"]
# SIGTERM starts the graceful drain (lifecycle.Drain); the process then exits with 0.
STOPSIGNAL SIGTERM
CMD ["grok-proxy", "serve"]
