# One image for web and both workers; docker-compose.yml picks the command.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend backend
COPY worker worker
RUN pip install --no-cache-dir -e .
COPY . .
RUN if [ -f frontend/package.json ]; then cd frontend && npm ci --no-audit --no-fund && npm run build; fi \
    && DEBUG=true python manage.py collectstatic --noinput -v0
RUN useradd --create-home studio && mkdir -p /data/media && chown -R studio /data
USER studio
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "backend.asgi:application"]
