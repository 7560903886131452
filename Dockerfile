# grok-proxy: docker build -t grok-proxy . && docker run -p 8000:8000 grok-proxy

# Build stage: resolve the locked dependencies into a virtual environment.
FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
# Dependencies first, so code changes do not invalidate this layer.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY src ./src
RUN uv sync --locked --no-dev --no-editable

# Runtime stage: the environment only, run by an unprivileged user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin grok
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json
USER 10001
EXPOSE 8000
# gRPC for xAI's own SDK (GROK_PROXY_GRPC_PORT)
EXPOSE 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
# SIGTERM starts the graceful drain (SHUTDOWN_GRACE_SECONDS); give it time in `docker stop -t`.
STOPSIGNAL SIGTERM
CMD ["grok-proxy", "serve", "--host", "0.0.0.0", "--port", "8000"]
