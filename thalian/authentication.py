"""API authentication: `Authorization: Bearer <token>` with hashed personal tokens."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from . import tenancy
from .models import ApiToken, hash_token


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>`: the request acts as that token's membership, in its organization only."""

    keyword = b"bearer"

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() != self.keyword:
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer <token>'.")
        raw = auth[1].decode(errors="replace")
        with tenancy.scopes_disabled():
            token = (
                ApiToken.objects.select_related("membership__user", "membership__organization")
                .filter(token_hash=hash_token(raw), revoked_at__isnull=True)
                .first()
            )
        if token is None or not token.membership.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.unscoped.filter(pk=token.pk).update(last_used_at=now)
        return (token.membership.user, token)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class BearerAuthScheme(OpenApiAuthenticationExtension):
    target_class = "thalian.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
