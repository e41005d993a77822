"""Thalian settings: everything comes from the environment (django-environ).

With no DATABASE_URL the embedded default is a SQLite file in the data directory; with no REDIS_URL Celery
runs tasks eagerly in process and the cache is local memory. Production sets DEBUG=false, SECRET_KEY,
ENCRYPTION_KEY, ALLOWED_HOSTS, DATABASE_URL, REDIS_URL, EMAIL_URL and SITE_URL.
"""

import secrets
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from csp.constants import NONE as CSP_NONE
from csp.constants import SELF as CSP_SELF
from django.core.exceptions import ImproperlyConfigured
from jinja2 import StrictUndefined

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)
DATA_DIR = Path(env.str("THALIAN_DATA_DIR", default=str(BASE_DIR / "data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _local_secret(name: str, make) -> str:
    """A secret for the embedded default only: generated once, kept in the data directory."""
    path = DATA_DIR / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG=false Thalian refuses to start without it: set SECRET_KEY to a "
            "long random value (for example: python -c 'import secrets; print(secrets.token_urlsafe(64))')."
        )
    SECRET_KEY = _local_secret("secret_key", lambda: secrets.token_urlsafe(64))

# Fernet keys for secrets at rest; several comma-separated keys allow rotation (first one encrypts).
ENCRYPTION_KEY = env.str("ENCRYPTION_KEY", default="")
if not ENCRYPTION_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEY is not set. With DEBUG=false Thalian needs it to encrypt credentials at rest: "
            "generate one with python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'."
        )
    ENCRYPTION_KEY = _local_secret("encryption_key", lambda: Fernet.generate_key().decode())
try:
    for _key in ENCRYPTION_KEY.split(","):
        Fernet(_key.strip())
except ValueError as exc:
    raise ImproperlyConfigured(f"ENCRYPTION_KEY is not a valid Fernet key: {exc}") from exc

# Ed25519 key for evidence signatures (PEM). Empty: generated once in the data directory.
EVIDENCE_SIGNING_KEY = env.str("EVIDENCE_SIGNING_KEY", default="")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Guest reviewers' sign-in links stay valid this many days after the campaign's due date.
GUEST_LINK_GRACE_DAYS = env.int("GUEST_LINK_GRACE_DAYS", default=7)
GUEST_LINK_RATE_LIMIT_PER_MINUTE = env.int("GUEST_LINK_RATE_LIMIT_PER_MINUTE", default=120)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.forms",  # the form renderer below finds Django's widget templates through the template settings
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "csp",
    "pgtrigger",
    "django_prometheus",
    "thalian",
    "entitlements",
    "campaigns",
    "access_requests",
    "itsm",
    "notifications",
    "evidence",
    "sso",
]
# The benchmarks (`manage.py bench`) live in bench/ in a checkout only; the Docker image leaves them out. The
# directory is checked rather than an ImportError caught, so a broken import of our own code still fails.
if (BASE_DIR / "bench" / "apps.py").is_file():
    INSTALLED_APPS.append("bench")

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "thalian.middleware.OrganizationScopeMiddleware",
    "thalian.middleware.SecurityHeadersMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "thalian.middleware.NulCharacterMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
# Prometheus metrics at /metrics (thalian/metrics.py): off unless a scraper's bearer token is configured.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

ROOT_URLCONF = "thalian.urls"
WSGI_APPLICATION = "thalian.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "thalian.context_processors.organization",
            ],
        },
    },
    # Hot fragments only (the review items rows): Jinja2 renders a few hundred rows several times faster than
    # the Django engine. Pages stay Django templates. The rows read plain row objects of the fields the page
    # names (campaigns.review_views.ROW_FIELDS), and only the columns a member shows: a name the template uses
    # but the row lacks is an error (StrictUndefined), never a silently empty cell.
    {
        "NAME": "jinja2",
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "templates" / "jinja2"],
        "APP_DIRS": False,
        "OPTIONS": {"autoescape": True, "auto_reload": DEBUG, "undefined": StrictUndefined},
    },
]

# Every form field renders through templates/forms/field.html: label, field, help, errors, in one wrapper.
FORM_RENDERER = "thalian.forms_renderer.FormRenderer"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'thalian.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 30)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "thalian.User"
AUTHENTICATION_BACKENDS = ["thalian.auth.ThrottledEmailBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Login throttling (thalian/auth.py): this many failures for an address from one IP within the window lock that
# IP out for the address (four times as many for one IP in all); failures from many IPs delay the address's next
# attempt progressively up to the maximum delay, except from IPs it signed in from before.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=900)
LOGIN_FAILURE_MAX_DELAY_SECONDS = env.int("LOGIN_FAILURE_MAX_DELAY_SECONDS", default=60)
LOGIN_KNOWN_IP_SECONDS = env.int("LOGIN_KNOWN_IP_SECONDS", default=30 * 24 * 3600)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Uploads: the import limit is checked by the import service; Django streams big files to disk.
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=200 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
IMPORT_ASYNC_THRESHOLD_ROWS = env.int("IMPORT_ASYNC_THRESHOLD_ROWS", default=5000)
EVIDENCE_ASYNC_THRESHOLD_ITEMS = env.int("EVIDENCE_ASYNC_THRESHOLD_ITEMS", default=100_000)

# Redis: Celery broker, result backend and cache. Without REDIS_URL (the embedded default) there are two modes:
# - EMBEDDED_BROKER=true, set by `make run` for its web, worker and beat processes: tasks are queued on a SQLite
#   file in the data directory (kombu's SQLAlchemy transport, no server to install) and run by the worker, so
#   beat's schedule (scheduled launches, reminders, retries, sweeps) runs too; the cache is a directory in the
#   data directory so progress written by the worker shows on pages served by the web process.
# - otherwise (manage.py commands, a bare runserver, scripts): tasks run eagerly in the calling process and the
#   cache is local memory.
REDIS_URL = env.str("REDIS_URL", default="")
EMBEDDED_BROKER = env.bool("EMBEDDED_BROKER", default=False)
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
elif EMBEDDED_BROKER:
    CELERY_BROKER_URL = f"sqla+sqlite:///{DATA_DIR / 'celery-broker.sqlite3'}"
    # Nothing reads task results; the broker file only carries messages.
    CELERY_RESULT_BACKEND = None
    CELERY_TASK_ALWAYS_EAGER = False
    # Passed to SQLAlchemy's create_engine: web, worker and beat share the file, so wait for its lock.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"connect_args": {"timeout": 30}}
    CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": DATA_DIR / "cache"}
    }
else:
    CELERY_BROKER_URL = "memory://"
    CELERY_RESULT_BACKEND = "cache+memory://"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Messages are published from requests (the outbox kick after commit): a broker that is down must cost a
# request at most a couple of seconds, never a retry loop. What could not be published is in the outbox table.
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
if REDIS_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT}
# Outbox (thalian/outbox.py): a claim older than this is taken to belong to a dead worker; handled events are
# deleted after OUTBOX_KEEP_DAYS.
OUTBOX_STALE_CLAIM_SECONDS = env.int("OUTBOX_STALE_CLAIM_SECONDS", default=300)
OUTBOX_KEEP_DAYS = env.int("OUTBOX_KEEP_DAYS", default=14)
# Time limits of every task (seconds): the soft limit raises SoftTimeLimitExceeded inside the task, which
# records a visible failure where a user waits; the hard limit kills the worker child. Long work (launch
# snapshots, imports, SCIM syncs, evidence builds) has its own, longer pair.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("TASK_TIME_LIMIT", default=360)
TASK_LONG_SOFT_TIME_LIMIT = env.int("TASK_LONG_SOFT_TIME_LIMIT", default=3600)
TASK_LONG_TIME_LIMIT = env.int("TASK_LONG_TIME_LIMIT", default=3660)
if not 0 < CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT or not 0 < TASK_LONG_SOFT_TIME_LIMIT < TASK_LONG_TIME_LIMIT:
    raise ImproperlyConfigured("each soft task time limit must be positive and below its hard limit")
CELERY_TASK_ANNOTATIONS = {
    name: {"soft_time_limit": TASK_LONG_SOFT_TIME_LIMIT, "time_limit": TASK_LONG_TIME_LIMIT}
    for name in (
        "campaigns.snapshot",
        "campaigns.build_evidence_package",
        "entitlements.tasks.inventory_import_task",
        "entitlements.tasks.scim_sync_task",
        "entitlements.tasks.findings_refresh_all_task",
        "entitlements.tasks.findings_refresh_task",
    )
}
# Stale-claim sweeps (thalian/claims.py): claimed work untouched for this long with no live worker is handed
# back, and failed visibly after CLAIM_MAX_ATTEMPTS attempts.
CLAIM_STALE_SECONDS = env.int("CLAIM_STALE_SECONDS", default=900)
CLAIM_MAX_ATTEMPTS = env.int("CLAIM_MAX_ATTEMPTS", default=3)
if CLAIM_STALE_SECONDS < 1 or CLAIM_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("CLAIM_STALE_SECONDS and CLAIM_MAX_ATTEMPTS must be at least 1")
# Each app declares a plain-dict SCHEDULE in <app>/beat.py and adds it from its AppConfig.ready().
CELERY_BEAT_SCHEDULE: dict = {}

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
# Seconds an SMTP call may take before the delivery attempt counts as failed and is retried (a server that
# never answers would otherwise hold a worker until the task's time limit).
EMAIL_TIMEOUT = EMAIL_CONFIG.get("EMAIL_TIMEOUT") or env.int("EMAIL_TIMEOUT", default=30)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Thalian <no-reply@thalian.localhost>")
# Slack Web API base address (overridden only to point at a test server).
# Outbound URLs (ITSM, SCIM, Teams, Slack) may not reach internal addresses except these (thalian/netguard.py).
ALLOWED_INTERNAL_HOSTS = env.list("ALLOWED_INTERNAL_HOSTS", default=[])
SLACK_API_URL = env.str("SLACK_API_URL", default="https://slack.com/api/")

# Security. Secure cookies, HSTS and HTTPS redirects whenever DEBUG is off.
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads nothing from it; the token is rendered into hx-headers
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Content-Security-Policy (django-csp): the site itself only, no inline script or style. A view that must
# reach further (a form posting to an identity provider, say) widens it with csp.decorators.csp_update.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [CSP_SELF],
        "script-src": [CSP_SELF],
        "style-src": [CSP_SELF],
        "img-src": [CSP_SELF, "data:"],
        "font-src": [CSP_SELF],
        "connect-src": [CSP_SELF],
        "object-src": [CSP_NONE],
        "base-uri": [CSP_SELF],
        "form-action": [CSP_SELF],
        "frame-ancestors": [CSP_NONE],
    }
}
# ITSM and SCIM base URLs must be https in production unless this is set.
ALLOW_INSECURE_HTTP_INTEGRATIONS = env.bool("ALLOW_INSECURE_HTTP_INTEGRATIONS", default=DEBUG)
# Extra CA bundle (PEM path) trusted for ITSM connections, e.g. an internal ServiceNow; empty: system CAs.
ITSM_CA_BUNDLE = env.str("ITSM_CA_BUNDLE", default="")
ITSM_TIMEOUT_SECONDS = env.float("ITSM_TIMEOUT_SECONDS", default=10.0)
# Single sign-on: timeout of discovery/metadata/token requests to identity providers; DNS servers ("ip" or
# "ip:port", comma-separated) asked for domain verification TXT records (empty: the system resolver); xmlsec1.
SSO_HTTP_TIMEOUT_SECONDS = env.float("SSO_HTTP_TIMEOUT_SECONDS", default=10.0)
SSO_DNS_NAMESERVERS = env.list("SSO_DNS_NAMESERVERS", default=[])
SAML_XMLSEC_BINARY = env.str("SAML_XMLSEC_BINARY", default="/usr/bin/xmlsec1")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "thalian.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "thalian.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "thalian.pagination.IdCursorPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Thalian API",
    "DESCRIPTION": "User access reviews: inventory, campaigns, evidence, remediation and notifications.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Schema quality is tested (tests/thalian/test_api.py); `check --deploy` stays about the deployment.
    "ENABLE_DJANGO_DEPLOY_CHECK": False,
    "SECURITY": [{"bearerAuth": []}],
    # Fields sharing a name (status, kind, ...) across models get one stable enum per choice set.
    "ENUM_NAME_OVERRIDES": {
        "CampaignStatusEnum": "campaigns.models.CampaignStatus.choices",
        "EvidencePackageStatusEnum": "evidence.models.EvidencePackageStatus.choices",
        "ReviewerStrategyEnum": "campaigns.models.ReviewerStrategy.choices",
        "DefaultOutcomeEnum": "campaigns.models.DefaultOutcome.choices",
        "IdentityStatusEnum": "entitlements.models.IdentityStatus.choices",
        "IdentityKindEnum": "entitlements.models.IdentityKind.choices",
        "SyncRunStatusEnum": "entitlements.models.SyncRunStatus.choices",
        "ImportKindEnum": "entitlements.csv_import.KINDS",
        "NotificationStatusEnum": "notifications.models.Status.choices",
        "ItsmConnectionKindEnum": "itsm.models.ConnectionKind.choices",
        "AccessRequestStatusEnum": "access_requests.models.RequestStatus.choices",
        "AccessRequestTypeEnum": "access_requests.models.RequestType.choices",
        "ApprovalStageKindEnum": "access_requests.models.StageKind.choices",
        "ApprovalDecisionEnum": "access_requests.models.ApprovalDecision.choices",
        "DecisionEnum": "campaigns.models.Decision.choices",
        "DeadlineOutcomeEnum": "campaigns.models.DeadlineOutcome.choices",
        "ReassignKindEnum": "campaigns.models.ReassignKind.choices",
    },
    "APPEND_COMPONENTS": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "Thalian API token"}}
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}, "xmlschema": {"level": "WARNING"}},
}
