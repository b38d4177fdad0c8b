# syntax=docker/dockerfile:1
# kairo-ingest: build the wheels in one stage, run them slim and unprivileged in the next.
# Targets: the default (last) stage is the product alone; `--target demo` adds the Apify
# simulator's wheel (tooling) for the dev overlay and the compose example
# (docs/deployment.md#the-image-replicas-and-connections).

FROM python:3.12-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY src ./src
COPY simulator ./simulator
RUN python -m pip wheel --wheel-dir /wheels . ./simulator

FROM python:3.12-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KAIRO_HTTP_HOST=0.0.0.0 \
    KAIRO_HTTP_PORT=8080 \
    KAIRO_LOG_FORMAT=json \
    KAIRO_DATA_DIR=/app/data \
    KAIRO_MIGRATIONS_DIR=/app/migrations
RUN groupadd --system --gid 10001 kairo \
    && useradd --system --uid 10001 --gid kairo --home-dir /app --no-create-home kairo
WORKDIR /app
COPY --from=build /wheels /wheels
# Only the wheels built above: the dependency versions were resolved once, in the build stage.
RUN python -m pip install --no-index --find-links=/wheels /wheels/kairo_ingest-*.whl \
    && rm -rf /wheels
COPY alembic.ini ./
COPY migrations ./migrations
RUN mkdir -p /app/data && chown 10001:10001 /app/data
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"KAIRO_HTTP_PORT\", \"8080\")}/livez', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["python", "-m", "kairo_ingest"]
CMD ["run"]

# The product plus the Apify simulator (its own wheel: tooling, not the product), for
# KAIRO_APIFY_SIMULATOR=true in the dev overlay and the compose example.
FROM runtime AS demo
USER 0:0
COPY --from=build /wheels /wheels
RUN python -m pip install --no-index --find-links=/wheels /wheels/kairo_apify_sim-*.whl \
    && rm -rf /wheels
USER 10001:10001

# The default target: the product alone, no simulator.
FROM runtime AS product
