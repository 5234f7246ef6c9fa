# driftline worker image: `docker build -t driftline .`, then `docker run --rm driftline --help`.
#
# BASE is any image with Python 3.11 and its venv module: the public python:3.11-slim by default; on a machine
# without an image registry, the Debian-built driftline-local/python:3.11 of deploy/local-engine.sh
# (`docker build --build-arg BASE=driftline-local/python:3.11 --network host .`). pip needs PyPI either way.
ARG BASE=python:3.11-slim

# Dependencies: a venv with the project's dependencies, read from pyproject.toml alone, so this layer is cached
# until pyproject.toml changes (every dependency ships a manylinux wheel: no compiler needed).
FROM ${BASE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml /src/pyproject.toml
RUN python3 -m venv /opt/driftline \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
       > /src/requirements.txt \
    && /opt/driftline/bin/pip install -q -r /src/requirements.txt

# The project itself, built from this checkout into the same venv (no dependency resolution: done above).
FROM deps AS build
COPY README.md /src/README.md
COPY streams /src/streams
COPY features /src/features
COPY models /src/models
COPY monitor /src/monitor
RUN /opt/driftline/bin/pip install -q --no-deps /src

# Runtime: the venv on a clean base, a non-root user, state under /data (a volume in docker-compose.yml).
FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/driftline/bin:$PATH \
    DRIFTLINE_REGISTRY=/data/registry \
    DRIFTLINE_RUN_DIR=/data/run
COPY --from=build /opt/driftline /opt/driftline
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin driftline \
    && mkdir -p /data/registry /data/run && chown -R driftline:driftline /data
USER 10001:10001
WORKDIR /data
EXPOSE 9100
ENTRYPOINT ["driftline"]
CMD ["--help"]
