"""OpenID Connect relying party (authorization code flow with PKCE) built on Authlib and joserfc."""

from __future__ import annotations

from dataclasses import dataclass

from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from django.conf import settings
from django.core.cache import cache
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .http import FetchError, fetch_json
from .models import IdentityProvider

REQUIRED_DISCOVERY_FIELDS = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
# Asymmetric algorithms only: "none" and HS256 (keyed with the client secret) are refused.
ALLOWED_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]


class OidcError(Exception):
    pass


def callback_url() -> str:
    return f"{settings.SITE_URL}/sso/oidc/callback/"


def discovery(provider: IdentityProvider, *, use_cache: bool = True) -> dict:
    """The provider's discovery document, checked: it names the configured issuer and the endpoints we use."""
    key = f"sso:oidc-discovery:{provider.discovery_url}"
    doc = cache.get(key) if use_cache else None
    if doc is None:
        doc = fetch_json(provider.discovery_url, what="OpenID Connect discovery document")
        missing = [f for f in REQUIRED_DISCOVERY_FIELDS if not doc.get(f)]
        if missing:
            raise FetchError(f"The discovery document at {provider.discovery_url} lacks {', '.join(missing)}.")
        expected = provider.issuer.rstrip("/").removesuffix("/.well-known/openid-configuration")
        if doc["issuer"].rstrip("/") != expected:
            raise FetchError(
                f"The discovery document names the issuer {doc['issuer']!r}, not {expected!r}: enter the issuer "
                "exactly as the identity provider publishes it."
            )
        cache.set(key, doc, timeout=300)
    return doc


def _session(provider: IdentityProvider) -> OAuth2Session:
    return OAuth2Session(
        client_id=provider.client_id,
        client_secret=provider.client_secret or None,
        scope=provider.scopes or "openid email",
        redirect_uri=callback_url(),
        code_challenge_method="S256",
    )


@dataclass
class AuthorizationStart:
    url: str
    state: str
    nonce: str
    code_verifier: str


def authorization_start(provider: IdentityProvider, *, login_hint: str = "") -> AuthorizationStart:
    doc = discovery(provider)
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(48)
    extra = {"nonce": nonce}
    if login_hint:
        extra["login_hint"] = login_hint
    url, _ = _session(provider).create_authorization_url(
        doc["authorization_endpoint"], state=state, code_verifier=verifier, **extra
    )
    return AuthorizationStart(url=url, state=state, nonce=nonce, code_verifier=verifier)


def _key_set(doc: dict) -> KeySet:
    try:
        return KeySet.import_key_set(fetch_json(doc["jwks_uri"], what="key set (JWKS)"))
    except (ValueError, JoseError) as exc:
        raise FetchError(f"The key set at {doc['jwks_uri']} cannot be read: {exc}") from None


def id_token_claims(provider: IdentityProvider, *, id_token: str, nonce: str, doc: dict | None = None) -> dict:
    """Verifies the ID token's signature, issuer, audience, expiry and nonce; returns its claims."""
    doc = doc or discovery(provider)
    try:
        token = jwt.decode(id_token, _key_set(doc), algorithms=ALLOWED_ALGORITHMS)
    except (JoseError, ValueError) as exc:
        raise OidcError(f"the ID token's signature could not be verified ({exc.__class__.__name__})") from None
    registry = jwt.JWTClaimsRegistry(
        leeway=60,
        iss={"essential": True, "value": doc["issuer"]},
        aud={"essential": True, "value": provider.client_id},
        exp={"essential": True},
        sub={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(token.claims)
    except JoseError as exc:
        claim = getattr(exc, "claim", "") or ""
        reason = {
            "ExpiredTokenError": "the ID token has expired",
            "InvalidClaimError": f"the ID token's {claim or 'claims'} claim is wrong",
            "MissingClaimError": f"the ID token lacks the {claim or 'required'} claim",
        }.get(exc.__class__.__name__, f"the ID token was refused ({exc})")
        raise OidcError(reason) from None
    return dict(token.claims)


def authorization_finish(provider: IdentityProvider, *, code: str, code_verifier: str, nonce: str) -> dict:
    """Exchanges the code for tokens and returns the verified identity claims (merged with userinfo)."""
    doc = discovery(provider)
    session = _session(provider)
    try:
        tokens = session.fetch_token(
            doc["token_endpoint"],
            code=code,
            code_verifier=code_verifier,
            timeout=settings.SSO_HTTP_TIMEOUT_SECONDS,
        )
    except Exception as exc:  # noqa: BLE001 - any failure of the exchange is reported the same way
        raise OidcError(f"the identity provider refused the authorization code ({exc})") from None
    if "id_token" not in tokens:
        raise OidcError("the identity provider returned no ID token; is the 'openid' scope configured?")
    claims = id_token_claims(provider, id_token=tokens["id_token"], nonce=nonce, doc=doc)
    if (not claims.get("email") or (provider.groups_claim and provider.groups_claim not in claims)) and doc.get(
        "userinfo_endpoint"
    ):
        try:
            info = fetch_json(
                doc["userinfo_endpoint"], what="userinfo endpoint",
                headers={"Authorization": f"Bearer {tokens['access_token']}"},
            )
        except FetchError as exc:
            raise OidcError(str(exc)) from None
        if info.get("sub") != claims["sub"]:
            raise OidcError("the userinfo endpoint answered for a different subject")
        claims = {**info, **claims}
    return claims


def connection_test(provider: IdentityProvider) -> list[str]:
    """What works, line by line; raises FetchError naming the first thing that does not."""
    doc = discovery(provider, use_cache=False)
    keys = _key_set(doc)
    lines = [
        f"Discovery document found at {provider.discovery_url}.",
        f"Issuer {doc['issuer']} matches.",
        f"Key set has {len(keys.keys)} key(s).",
    ]
    supported = doc.get("scopes_supported")
    if supported:
        unknown = [s for s in (provider.scopes or "").split() if s not in supported]
        if unknown:
            raise FetchError(f"The provider does not support the scope(s) {', '.join(unknown)}.")
    return lines
