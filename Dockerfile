# driftline worker image: `docker build -t driftline .`, then `docker run --rm driftline --help`.
#
# BASE is any Debian-based image with Python 3.11 and its venv module: the public python:3.11-slim by default; on a
# machine without an image registry, the Debian-built driftline-local/python:3.11 of deploy/local-engine.sh
# (`docker build --build-arg BASE=driftline-local/python:3.11 --network host .`). pip needs PyPI and apt a Debian
# mirror, either way.
# Two stages. `build` compiles driftline's C parts (features._fold, features._check, features._save,
# monitor._sensors, models._matrix: setup.py) into a wheel, with a C compiler and the Python headers that stay in that stage; the
# build fails if they did not compile, so the image never falls back to their (slower) Python twins unnoticed. The
# image itself has no compiler: every dependency ships a manylinux wheel. Its layers from the slowest-changing down:
# the user, the dependencies (read from pyproject.toml alone, cached until it changes), then driftline's wheel
# (seconds).
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# gcc, and the headers where BASE lacks them (python:3.11-slim has its own; Debian's python3 needs python3-dev)
RUN if python3 -c "import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()['include'] + '/Python.h'))"; \
    then dev=""; else dev=python3-dev; fi \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev $dev >/dev/null \
    && python3 -m venv /opt/build && /opt/build/bin/pip install -q "setuptools>=77" wheel
COPY pyproject.toml README.md setup.py /src/
COPY streams /src/streams
COPY features /src/features
COPY models /src/models
COPY monitor /src/monitor
RUN /opt/build/bin/pip wheel -q --no-deps --no-build-isolation -w /wheels /src \
    && /opt/build/bin/python -c "import glob, sys, zipfile; \
built = [n for n in zipfile.ZipFile(glob.glob('/wheels/*.whl')[0]).namelist() if n.endswith('.so')]; \
sys.exit(None if len(built) == 5 else f'the C parts did not all compile: {built}')"

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
print('\n'.join(p['project']['dependencies']))" > /src/requirements.txt \
    && pip install -q -r /src/requirements.txt && rm -rf /src
COPY --from=build /wheels /wheels
RUN pip install -q --no-deps /wheels/*.whl && rm -rf /wheels
USER 10001:10001
WORKDIR /data
EXPOSE 9100
ENTRYPOINT ["driftline"]
CMD ["--help"]
