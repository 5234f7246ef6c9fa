# driftline worker image: `docker build -t driftline .`, then `docker run --rm driftline --help`.
# Build stage: wheels for the project and its dependencies (a compiler for any that ship only sources).
FROM python:3.11-slim AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY features ./features
COPY models ./models
COPY monitor ./monitor
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: the installed wheels, a non-root user, state under /data (a volume in docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DRIFTLINE_REGISTRY=/data/registry \
    DRIFTLINE_RUN_DIR=/data/run
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels driftline && rm -rf /wheels \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin driftline \
    && mkdir -p /data/registry /data/run && chown -R driftline:driftline /data
USER driftline
WORKDIR /data
EXPOSE 9100
ENTRYPOINT ["driftline"]
CMD ["--help"]
