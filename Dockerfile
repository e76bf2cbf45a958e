# One image for the web processes and the workers (cutout serve / cutout worker).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY conf conf
COPY soda soda
COPY uws uws
COPY auth auth
COPY renderers renderers
COPY storage storage
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 cutout && mkdir /data && chown cutout /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER cutout
ENV CUTOUT_DATA_DIR=/data CUTOUT_HOST=0.0.0.0
VOLUME /data
EXPOSE 8000
CMD ["cutout", "serve"]
