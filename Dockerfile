# driftline worker image: `docker build -t driftline .`, then `docker run --rm driftline --help`.
#
# BASE is any image with Python 3.11 and its venv module: the public python:3.11-slim by default; on a machine
# without an image registry, the Debian-built driftline-local/python:3.11 of deploy/local-engine.sh
# (`docker build --build-arg BASE=driftline-local/python:3.11 --network host .`). pip needs PyPI either way.
# Every dependency ships a manylinux wheel: no compiler, one stage. driftline's own C parts (features._fold and
# features._check, setup.py) are optional: with no compiler in BASE (python:3.11-slim, the local Debian image) the
# image runs their Python equivalents, which compute the same features and accept the same records, more slowly. Layers from the slowest-changing down: the user,
# the dependencies (read from pyproject.toml alone, cached until it changes), then the checkout itself (seconds).
ARG BASE=python:3.11-slim
FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/driftline/bin:$PATH \
    DRIFTLINE_REGISTRY=/data/registry \
    DRIFTLINE_RUN_DIR=/data/run
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin driftline \
    && mkdir -p /data/registry /data/run && chown -R driftline:driftline /data
COPY pyproject.toml /src/pyproject.toml
RUN python3 -m venv /opt/driftline \
    && python3 -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb')); \
print('\n'.join(p['project']['dependencies'] + p['build-system']['requires']))" > /src/requirements.txt \
    && pip install -q -r /src/requirements.txt
COPY README.md setup.py /src/
COPY streams /src/streams
COPY features /src/features
COPY models /src/models
COPY monitor /src/monitor
# the build backend is already in the venv (build-system.requires above): no download, no isolation
RUN pip install -q --no-deps --no-build-isolation /src && rm -rf /src
USER 10001:10001
WORKDIR /data
EXPOSE 9100
ENTRYPOINT ["driftline"]
CMD ["--help"]
