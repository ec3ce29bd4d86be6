# syntax=docker/dockerfile:1
# The platform image: the `geomlops` CLI and every workflow step that is not a model's
# (resolve, materialise, register, approved, plan, publish, report), the STAC API
# (uvicorn geomlops.catalog.api:create_app), the gateway with its map page
# (uvicorn geomlops.gateway.app:create_app), the MLflow server and the chart's hook Jobs
# (python -m geomlops.setup, python -m geomlops.catalog.bootstrap).
# Build from the repository root:  docker build -t ghcr.io/geomlops/geomlops:0.1.0 .
# The tag is the workflow templates' default image (GEOMLOPS_TRAIN_PLATFORM_IMAGE); CI
# reads it from the settings, never from here.

# The map page's one browser dependency, from the lock file `make` installs from too.
FROM node:22.12.0-bookworm-slim AS map
WORKDIR /map
COPY gateway/static/package.json gateway/static/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY catalog catalog
COPY registration registration
COPY governance governance
COPY datasets datasets
COPY ml ml
COPY workflows workflows
COPY serving serving
COPY transformers transformers
COPY cli cli
COPY gateway gateway
RUN /opt/venv/bin/pip install "/src[platform]"
# Served by the gateway from its package folder (gateway/mappage.py: static/node_modules).
COPY --from=map /map/node_modules/maplibre-gl/dist /opt/venv/lib/python3.11/site-packages/geomlops/gateway/static/node_modules/maplibre-gl/dist

FROM python:3.11-slim-bookworm
# git: DVC checks dataset versions out of the dataset repository (materialise step).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 geomlops \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp geomlops
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    GEOMLOPS_HOME=/tmp/geomlops
LABEL org.opencontainers.image.title="geomlops" \
      org.opencontainers.image.description="geomlops platform: CLI, workflow steps, STAC API, gateway, MLflow server" \
      org.opencontainers.image.source="https://github.com/geomlops/geomlops" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.ref.name="ghcr.io/geomlops/geomlops:0.1.0"
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8090 5000
CMD ["geomlops", "--help"]
