"""Organization scoping that fails closed.

Tenant models use ``ScopedManager`` as their default manager. Any query through it raises ``ScopeError``
unless an organization scope is active (``scope(organization)``) or scoping was explicitly disabled
(``scopes_disabled()``, for platform code, management commands that iterate organizations, and tests that
build fixtures). Querysets are filtered when they are created, so a lazily evaluated queryset (a streamed
CSV, say) stays bound to the organization it was built for.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from django.db import models

_current: contextvars.ContextVar[int | None] = contextvars.ContextVar("thalian_org", default=None)
_disabled: contextvars.ContextVar[bool] = contextvars.ContextVar("thalian_scopes_disabled", default=False)
_in_request: contextvars.ContextVar[bool] = contextvars.ContextVar("thalian_in_request", default=False)


class ScopeError(RuntimeError):
    pass


def current_organization_id() -> int | None:
    return _current.get()


@contextlib.contextmanager
def scope(organization=None, *, organization_id: int | None = None) -> Iterator[None]:
    org_id = organization_id if organization_id is not None else getattr(organization, "pk", None)
    if org_id is None:
        raise ScopeError("scope() needs an organization")
    token = _current.set(org_id)
    disabled_token = _disabled.set(False)
    try:
        yield
    finally:
        _disabled.reset(disabled_token)
        _current.reset(token)


@contextlib.contextmanager
def request_scope() -> Iterator[None]:
    """Around a whole request (``OrganizationScopeMiddleware``): the request starts with no organization scope,
    and whatever scope a view activates with ``activate()`` is gone when the request ends, however it ends
    (an uncaught exception included), so a thread never carries one request's organization into the next."""
    tokens = (_current.set(None), _disabled.set(False), _in_request.set(True))
    try:
        yield
    finally:
        for var, token in zip((_current, _disabled, _in_request), tokens, strict=True):
            var.reset(token)


def activate(organization) -> None:
    """Scope the rest of the current request to `organization`; only inside ``request_scope()``, which ends it."""
    if not _in_request.get():
        raise ScopeError("activate() is for requests; elsewhere use `with scope(organization):`")
    if getattr(organization, "pk", None) is None:
        raise ScopeError("activate() needs an organization")
    _current.set(organization.pk)
    _disabled.set(False)


@contextlib.contextmanager
def scopes_disabled() -> Iterator[None]:
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


class ScopedManager(models.Manager):
    """Default manager of every tenant model: filters by the active organization or refuses."""

    def get_queryset(self) -> models.QuerySet:
        qs = super().get_queryset()
        if _disabled.get():
            return qs
        org_id = _current.get()
        if org_id is None:
            raise ScopeError(
                f"{self.model.__name__} queried with no organization scope active; wrap the code in "
                "thalian.tenancy.scope(organization)."
            )
        return qs.filter(organization_id=org_id)


class TenantModel(models.Model):
    """Abstract base: its own organization foreign key and a fail-closed default manager."""

    organization = models.ForeignKey("thalian.Organization", on_delete=models.CASCADE, related_name="+")

    objects = ScopedManager()
    unscoped = models.Manager()

    class Meta:
        abstract = True
        base_manager_name = "unscoped"


def assert_same_organization(*objects) -> None:
    """Services that link objects call this; mixing organizations is a programming error."""
    org_ids = {getattr(o, "organization_id", None) for o in objects if o is not None}
    if len(org_ids) > 1:
        raise ScopeError(f"objects from different organizations cannot be linked: {sorted(map(str, org_ids))}")
