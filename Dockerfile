# syntax=docker/dockerfile:1
# One image for the web processes and the workers:
#   docker run ... cutout-service cutout serve --host 0.0.0.0     (web)
#   docker run ... cutout-service cutout worker                   (job worker)
# docker-compose.yml runs the production shape (nginx, 2 web, N workers, Redis, PostgreSQL);
# see nginx/README.md.

# --- build: wheels of the service (with its package data, conf/defaults.toml) and of every
# dependency, so the runtime stage installs offline and carries no build tools.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY conf conf
COPY soda soda
COPY uws uws
COPY auth auth
COPY renderers renderers
COPY storage storage
# The service's wheel must carry the defaults the settings loader reads.
RUN pip wheel --wheel-dir /wheels . \
    && python -c "import sys, zipfile, glob; \
names = zipfile.ZipFile(glob.glob('/wheels/cutout_service-*.whl')[0]).namelist(); \
sys.exit(0 if 'conf/defaults.toml' in names else 'conf/defaults.toml is missing from the wheel')"

# --- runtime: non-root, no compilers, no source tree.
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# xmlsec1: pysaml2 signs and checks SAML messages with it.
RUN apt-get update && apt-get install -y --no-install-recommends xmlsec1 \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels cutout-service \
    && useradd --create-home --uid 10001 --user-group cutout \
    && mkdir /data && chown cutout:cutout /data \
    && cd /tmp && cutout check-config >/dev/null
USER cutout
WORKDIR /home/cutout
# All state (demo image store, results, the SQLite database of the embedded shape) is in
# /data; in the distributed shape it is a volume shared by every web and worker container
# (and mounted read-only into nginx, which sends the result files).
ENV CUTOUT_DATA_DIR=/data CUTOUT_HOST=0.0.0.0
VOLUME /data
EXPOSE 8000
CMD ["cutout", "serve", "--host", "0.0.0.0", "--port", "8000"]
