# One image for web and both workers; docker-compose.yml picks the command.

# The browser app is built with the Node that frontend/package.json's engines ask for (Vite 7 and
# dcmjs need >= 22.13; Debian bookworm's own nodejs is 18). Only its dist/ reaches the final image.
FROM node:22.14-bookworm-slim AS frontend
WORKDIR /frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend backend
COPY worker worker
RUN pip install --no-cache-dir -e .
COPY . .
COPY --from=frontend /frontend/dist frontend/dist
RUN DEBUG=true python manage.py collectstatic --noinput -v0
RUN useradd --create-home studio && mkdir -p /data/media && chown -R studio /data
USER studio
EXPOSE 8000
# The same ASGI server as docker-compose.yml's web service and the README: uvicorn.
CMD ["uvicorn", "backend.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", \
     "--ws-max-size", "16777216"]
