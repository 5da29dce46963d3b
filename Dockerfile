# The collector image: API and web pages, ingest and the worker share it.
FROM python:3.11-slim-bookworm AS build

WORKDIR /src
COPY constraints.txt ./
COPY agent/ agent/
COPY collector/ collector/
RUN python -m venv /opt/edufleet \
    && /opt/edufleet/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/edufleet/bin/pip install --no-cache-dir -c constraints.txt ./agent ./collector

FROM python:3.11-slim-bookworm

# fonts-noto-cjk renders Chinese text on printed QR labels; postgresql-client
# gives pg_dump and pg_restore for the backup commands.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-noto-cjk postgresql-client tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/edufleet --create-home edufleet

COPY --from=build /opt/edufleet /opt/edufleet
ENV PATH=/opt/edufleet/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EDUFLEET_ENVIRONMENT=production \
    EDUFLEET_LOG_FORMAT=json \
    EDUFLEET_UPLOAD_DIR=/var/lib/edufleet/uploads

USER edufleet
WORKDIR /var/lib/edufleet
EXPOSE 8000 9100
ENTRYPOINT ["/usr/bin/tini", "--", "edufleet"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
