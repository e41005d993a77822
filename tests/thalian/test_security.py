"""Security headers, health check, production configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]


def _csp_directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        bits = part.split()
        if bits:
            out[bits[0]] = bits[1:]
    return out


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/o/acme/", "/api/v1/orgs/acme/me/", "/healthz", "/nope/"])
def test_every_response_carries_the_security_headers(client_for, member, path):
    client = client_for(member("admin"))
    response = client.get(path)
    csp = _csp_directives(response["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert not any("unsafe" in v for values in csp.values() for v in values)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_pages_have_no_inline_script_or_style(client_for, member):
    import re

    client = client_for(member("super_admin"))
    for name in ("org_dashboard", "member_list", "org_settings", "token_list", "audit_log"):
        body = client.get(reverse(name, args=["acme"])).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body), name
        assert "<style" not in body and " style=" not in body, name
        assert not re.search(r"\son[a-z]+=", body), name


@pytest.mark.django_db
def test_healthz_reports_database_and_broker(client, settings):
    response = client.get("/healthz")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ok" and data["database"] == "ok"
    assert data["broker"] == ("ok" if settings.REDIS_URL else "ok (eager, in process)")


@pytest.mark.django_db
def test_healthz_answers_503_when_the_broker_is_unreachable(client, settings):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "error" and response.json()["broker"].startswith("error")
    assert response.json()["database"] == "ok"


def _production_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CI")}
    env.update(
        DEBUG="false",
        SECRET_KEY="k" * 20 + "-production-secret-key-with-enough-entropy-1234567890",
        ENCRYPTION_KEY=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="thalian.example.com",
        SITE_URL="https://thalian.example.com",
        DJANGO_SETTINGS_MODULE="thalian.settings",
    )
    env.update(extra)
    return env


def test_check_deploy_is_clean_for_a_production_configuration(tmp_path):
    env = _production_env(THALIAN_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_secret_key(tmp_path):
    env = _production_env(THALIAN_DATA_DIR=str(tmp_path), SECRET_KEY="")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_production_cookies_are_secure(tmp_path):
    env = _production_env(THALIAN_DATA_DIR=str(tmp_path))
    code = (
        "import django;django.setup();from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.split() == ["True", "True", "True", "True"], result.stderr


def _nul_lists(campaign_id) -> list[str]:
    lists = ["inventory/identities/", "inventory/applications/", "inventory/entitlements/",
             f"campaigns/{campaign_id}/items/"]
    api = ["identities/", "applications/", "entitlements/", f"campaigns/{campaign_id}/items/"]
    return [f"/o/acme/{p}" for p in lists] + [f"/api/v1/orgs/acme/{p}" for p in api]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["admin", "viewer", "reviewer"])
@pytest.mark.parametrize("param", ["search", "q", "department", "application", "decision"])
def test_a_nul_character_in_any_filter_answers_400_never_500(member, client_for, api_for, role, param):
    from tests.campaigns.review_support import active_campaign

    membership = member(role)
    campaign = active_campaign(membership.organization, title="Q3 review")
    client, api = client_for(membership), api_for(membership)
    client.raise_request_exception = api.raise_request_exception = False
    for path in _nul_lists(campaign.pk):
        response = (api if path.startswith("/api/") else client).get(path, {param: "ab\x00c"})
        assert response.status_code == 400, (path, response.status_code)
        assert "NUL character" in response.content.decode(), path


@pytest.mark.django_db
def test_a_nul_character_in_a_form_field_or_json_body_answers_400_and_changes_nothing(member, client_for, api_for):
    from thalian.models import ApiToken
    from thalian.tenancy import scopes_disabled

    admin = member("admin")
    response = client_for(admin).post(
        "/o/acme/settings/tokens/", "name=ci%00token", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400 and b"form field &#x27;name&#x27; contains a NUL character" in response.content
    response = api_for(admin).post("/api/v1/orgs/acme/tokens/", {"name": "ci\u0000token"}, format="json")
    assert response.status_code == 400 and "NUL character" in response.json()["detail"]
    response = client_for(admin).post("/o/acme/settings/tokens/", {"name": "ci\x00token"})  # multipart
    assert response.status_code == 400 and b"form field &#x27;name&#x27; contains a NUL" in response.content
    with scopes_disabled():
        assert ApiToken.objects.count() == 1  # the one api_for made
