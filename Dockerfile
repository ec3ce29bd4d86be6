# syntax=docker/dockerfile:1
# The platform image: the `geomlops` CLI and every workflow step that is not a model's
# (resolve, materialise, register, approved, plan, publish, report), the STAC API
# (uvicorn geomlops.catalog.api:create_app), the MLflow server and the chart's hook Jobs
# (python -m geomlops.setup, python -m geomlops.catalog.bootstrap).
# Build from the repository root:  docker build -t ghcr.io/geomlops/geomlops:0.1.0 .
# The tag is the workflow templates' default image (GEOMLOPS_TRAIN_PLATFORM_IMAGE); CI
# reads it from the settings, never from here.

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
RUN /opt/venv/bin/pip install /src

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
      org.opencontainers.image.description="geomlops platform: CLI, workflow steps, STAC API, MLflow server" \
      org.opencontainers.image.source="https://github.com/geomlops/geomlops" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.ref.name="ghcr.io/geomlops/geomlops:0.1.0"
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 5000
CMD ["geomlops", "--help"]
