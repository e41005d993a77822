# Thalian application image: web (gunicorn), Celery worker and beat all run from it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    THALIAN_DATA_DIR=/data

WORKDIR /app
# xmlsec1 checks SAML signatures (single sign-on).
RUN apt-get update && apt-get install -y --no-install-recommends xmlsec1 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml ./
RUN pip install --upgrade pip && pip install .
COPY . .
# Static files are collected at build time and served by whitenoise. Build-only throwaway keys.
RUN DEBUG=true SECRET_KEY=build-only ENCRYPTION_KEY=$(python -c 'from cryptography.fernet import Fernet;print(Fernet.generate_key().decode())') \
    THALIAN_DATA_DIR=/tmp/build-data python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --home /app thalian \
    && mkdir -p /data && chown thalian /data
USER thalian
EXPOSE 8000
CMD ["gunicorn", "thalian.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
