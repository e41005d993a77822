import ssl

import pytest
import trustme
from pytest_httpserver import HTTPServer


@pytest.fixture(scope="session")
def itsm_ca():
    return trustme.CA()


@pytest.fixture(scope="session")
def itsm_ca_bundle(itsm_ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("itsm-ca") / "ca.pem"
    itsm_ca.cert_pem.write_to_path(str(path))
    return str(path)


def _start(ssl_context=None):
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=ssl_context, threaded=True)
    server.start()
    return server


@pytest.fixture(scope="session")
def _itsm_http_server():
    server = _start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture(scope="session")
def _itsm_https_server(itsm_ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    itsm_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = _start(context)
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def itsm_http_server(_itsm_http_server):
    _itsm_http_server.clear()
    yield _itsm_http_server
    _itsm_http_server.clear()


@pytest.fixture
def itsm_https_server(_itsm_https_server):
    _itsm_https_server.clear()
    yield _itsm_https_server
    _itsm_https_server.clear()


# Django fixtures ---------------------------------------------------------------------------------------


def _connection_data(fake, **extra) -> dict:
    base = {"name": f"{fake.kind} desk", "kind": fake.kind, "base_url": fake.base_url, "is_default": True}
    if fake.kind == "jira":
        base.update(email=fake.email, api_token=fake.api_token, project_key=fake.project_key)
    elif fake.kind == "servicenow":
        base.update(username=fake.username, password=fake.password, assignment_group="Identity Ops")
    elif fake.kind == "freshservice":
        base.update(api_key=fake.api_key, group_id="42", priority="3")
    else:
        base.update(
            email=fake.email, api_token=fake.api_token, group_id="7", priority="high", tags=["access-review"]
        )
    base.update(extra)
    return base


@pytest.fixture
def itsm_settings(settings, itsm_ca_bundle):
    settings.ALLOW_INSECURE_HTTP_INTEGRATIONS = True
    settings.ITSM_CA_BUNDLE = itsm_ca_bundle
    settings.SITE_URL = "https://thalian.example.com"
    return settings


@pytest.fixture
def fake_vendor(itsm_ca):
    """fake_vendor("jira") -> a running fake of that kind on its own port (ServiceNow over TLS)."""
    from tests.fakes.itsm import FAKES

    servers = []

    def make(kind: str = "jira", **kwargs):
        context = None
        if kind == "servicenow":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            itsm_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        server = _start(context)
        servers.append(server)
        return FAKES[kind](**kwargs).install(server)

    yield make
    for server in servers:
        server.clear()
        server.stop()


@pytest.fixture
def jira(fake_vendor):
    return fake_vendor("jira")


@pytest.fixture
def connect(org, itsm_settings):
    """connect(fake, **overrides) -> ItsmConnection of acme pointing at the fake."""
    from itsm.itsm_connections import itsm_connection_create

    def make(fake, organization=None, **extra):
        return itsm_connection_create(
            organization=organization or org, actor=None, data=_connection_data(fake, **extra)
        )

    return make


@pytest.fixture
def reviewer(member):
    from thalian.permissions import Role

    membership = member(Role.SECURITY_ANALYST, email="grace@acme.test")
    membership.user.name = "Grace Hopper"
    membership.user.save()
    return membership


@pytest.fixture
def revoked_item(org, reviewer):
    """revoked_item(application=None, role="admin", ...) -> a ReviewItem decided revoke (hook not yet run),
    with a present entitlement behind it."""
    import datetime as dt

    from django.utils import timezone

    from campaigns.models import CampaignStatus
    from tests.factories import (
        ApplicationFactory,
        CampaignFactory,
        EntitlementFactory,
        IdentityFactory,
        ReviewItemFactory,
    )

    campaign = CampaignFactory(
        organization=org,
        title="Q1 access review",
        status=CampaignStatus.ACTIVE,
        due_date=dt.date(2026, 3, 31),
    )
    counter = {"n": 0}

    def make(
        *,
        application=None,
        role: str = "admin",
        email: str | None = None,
        name: str = "Ada Lovelace",
        reason: str = "left the team",
        organization=None,
        item_campaign=None,
    ):
        organization = organization or org
        counter["n"] += 1
        application = application or ApplicationFactory(
            organization=organization, name=f"GitHub {counter['n']}"
        )
        email = email or f"ada{counter['n']}@acme.test"
        identity = IdentityFactory(organization=organization, email=email, name=name)
        entitlement = EntitlementFactory(
            organization=organization, identity=identity, application=application, role=role
        )
        return ReviewItemFactory(
            organization=organization,
            campaign=item_campaign
            or (campaign if organization == org else CampaignFactory(organization=organization)),
            entitlement=entitlement,
            application=application,
            identity_email=email,
            identity_name=name,
            application_name=application.name,
            role=role,
            decision="revoke",
            decision_reason=reason,
            decided_by=reviewer.user,
            decided_by_email=reviewer.user.email,
            decided_by_role=reviewer.role,
            decided_at=timezone.now(),
            reviewer=reviewer,
            reviewer_email=reviewer.user.email,
        )

    make.campaign = campaign
    return make


@pytest.fixture
def decide(org, django_capture_on_commit_callbacks):
    """decide(items, decision, reason=..., by=membership) records the decision as the campaign service does and
    runs the ITSM hook with its on-commit work (the Celery tasks run eagerly)."""
    from django.utils import timezone

    from campaigns.models import ReviewItem
    from itsm.services import tickets_on_decisions
    from thalian.tenancy import scope

    def do(items, decision: str | None = None, *, reason: str = "", by=None, organization=None):
        organization = organization or org
        items = items if isinstance(items, list | tuple) else [items]
        ids = [i.pk for i in items]
        if decision is not None:
            with scope(organization):
                ReviewItem.objects.filter(pk__in=ids).update(
                    decision=decision,
                    decision_reason=reason,
                    decided_by=by.user if by else None,
                    decided_by_email=by.user.email if by else "system",
                    decided_at=timezone.now(),
                )
        with django_capture_on_commit_callbacks(execute=True):
            result = tickets_on_decisions(organization_id=organization.pk, item_ids=ids)
        for item in items:
            with scope(organization):
                item.refresh_from_db()
        return result

    return do
