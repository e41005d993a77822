"""Platform test helpers."""

from __future__ import annotations

import re

import pytest

from thalian.models import AuditEvent


def link_in(body: str) -> str:
    """The first absolute http(s) link of an e-mail body."""
    match = re.search(r"https?://\S+", body)
    assert match, f"no link in e-mail:\n{body}"
    return match.group(0)


def path_of(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


@pytest.fixture
def audit_actions():
    """audit_actions(org) -> list of (action, actor_email) for the organization, oldest first."""

    def get(org):
        return list(AuditEvent.objects.filter(organization=org).order_by("id").values_list("action", "actor_email"))

    return get
