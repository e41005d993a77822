# Thalian developer commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup run test test-fast lint bench migrate demo worker beat check-deploy clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $(VENV)/.installed

setup: $(VENV)/.installed

migrate: setup
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py loaddemo

## Set up, migrate, load the demo and run web, worker and beat at http://127.0.0.1:8000 (embedded default: SQLite
## database and a SQLite broker file in the data directory, no server to install). Ctrl-C stops all three.
run: demo
	PATH="$(abspath $(VENV))/bin:$$PATH" EMBEDDED_BROKER=true HOST=$(HOST) $(VENV)/bin/honcho -f Procfile.dev start -p $(PORT)

## Set up and run the whole test suite (PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/thalian_test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/14
test: setup
	@{ command -v chromium >/dev/null 2>&1 && command -v xmlsec1 >/dev/null 2>&1; } \
	  || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium xmlsec1 >/dev/null; } \
	  || echo "Chromium or xmlsec1 is not installed (apt-get install chromium xmlsec1): browser and SAML tests will fail or skip."
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

## Benchmarks against raw SQL on PostgreSQL (default: the local server; REDIS_URL for the ITSM benchmark).
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/thalian_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/13
bench: setup
	export DATABASE_URL=$${DATABASE_URL:-$(BENCH_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(BENCH_REDIS_URL)}; \
	$(PY) manage.py ensure_database && $(PY) manage.py migrate --noinput -v0 && $(PY) manage.py bench $(BENCH_ARGS)

## Without REDIS_URL these use the embedded SQLite broker (EMBEDDED_BROKER), like `make run`.
worker: setup
	EMBEDDED_BROKER=$${EMBEDDED_BROKER:-true} $(VENV)/bin/celery -A thalian worker -l INFO

beat: setup
	EMBEDDED_BROKER=$${EMBEDDED_BROKER:-true} $(VENV)/bin/celery -A thalian beat -l INFO

check-deploy: setup
	DEBUG=false SECRET_KEY=$$($(PY) -c 'import secrets;print(secrets.token_urlsafe(64))') \
	ENCRYPTION_KEY=$$($(PY) -c 'from cryptography.fernet import Fernet;print(Fernet.generate_key().decode())') \
	ALLOWED_HOSTS=thalian.example.com $(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
