"""Pull client for SCIM 2.0 service providers (RFC 7643 resources, RFC 7644 protocol).

It reads the `/Users` and `/Groups` endpoints page by page with index pagination
(`startIndex`/`count`) and yields plain, normalized records, so the sync service never
deals with the wire format.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from thalian import netguard

LIST_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
USER_ATTRIBUTES = "id,userName,displayName,name,emails,active,externalId"
GROUP_ATTRIBUTES = "id,displayName,members"
# A provider that keeps answering pages without reaching totalResults would loop for
# ever; no directory we pull from is anywhere near this many pages.
MAX_PAGES = 100_000


class ScimError(Exception):
    """A SCIM pull that could not complete. `retryable` says whether trying later may help."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ScimAuthError(ScimError):
    """The provider refused the bearer token (401) or its rights (403)."""


class ScimUnavailableError(ScimError):
    """The provider could not be reached, timed out, or answered with a server error."""

    retryable = True


class ScimProtocolError(ScimError):
    """The provider answered something that is not a valid SCIM 2.0 response."""


@dataclass(frozen=True, slots=True)
class ScimUser:
    id: str
    user_name: str
    email: str
    name: str
    active: bool
    external_id: str


@dataclass(frozen=True, slots=True)
class ScimGroup:
    id: str
    display_name: str
    member_ids: tuple[str, ...]


class ScimClient:
    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        page_size: int = 200,
        timeout: float = 15.0,
        session: requests.Session | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"SCIM base URL must start with http:// or https://, got {base_url!r}")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.timeout = timeout
        self.session = netguard.guard_session(session or requests.Session())
        self.session.headers.update(
            {"Authorization": f"Bearer {token}", "Accept": "application/scim+json, application/json"}
        )

    def iter_users(self) -> Iterator[ScimUser]:
        for resource in self._pages("Users", USER_ATTRIBUTES):
            yield normalize_user(resource)

    def iter_groups(self) -> Iterator[ScimGroup]:
        for resource in self._pages("Groups", GROUP_ATTRIBUTES):
            yield normalize_group(resource)

    def _pages(self, endpoint: str, attributes: str) -> Iterator[dict[str, Any]]:
        start_index = 1
        for _ in range(MAX_PAGES):
            payload = self._get(
                endpoint, {"startIndex": start_index, "count": self.page_size, "attributes": attributes}
            )
            resources, total = _parse_list_response(payload, endpoint)
            yield from resources
            start_index += len(resources)
            # Providers may cap `count` below what was asked (RFC 7644 3.4.2.4), so the end
            # is decided by totalResults, never by a short page.
            if not resources or start_index > total:
                return
        raise ScimProtocolError(f"SCIM /{endpoint} never reached its totalResults after {MAX_PAGES} pages")

    def _get(self, endpoint: str, params: dict[str, Any]) -> Any:
        url = f"{self.base_url}/{endpoint}"
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.Timeout as exc:
            raise ScimUnavailableError(f"SCIM service at {self.base_url} timed out after {self.timeout:g}s") from exc
        except requests.RequestException as exc:
            raise ScimUnavailableError(f"SCIM service at {self.base_url} is unreachable: {exc}") from exc

        status = response.status_code
        if status in (401, 403):
            reason = "refused the bearer token" if status == 401 else "denied access with this bearer token"
            raise ScimAuthError(
                f"SCIM service at {self.base_url} {reason} (HTTP {status}){_detail(response)}", status=status
            )
        if status == 429 or status >= 500:
            raise ScimUnavailableError(
                f"SCIM service at {self.base_url} answered HTTP {status} for /{endpoint}{_detail(response)}",
                status=status,
            )
        if status != 200:
            raise ScimProtocolError(
                f"SCIM service at {self.base_url} answered HTTP {status} for /{endpoint}{_detail(response)}; "
                "check the base URL",
                status=status,
            )
        try:
            return response.json()
        except ValueError as exc:
            content_type = response.headers.get("Content-Type", "unknown")
            raise ScimProtocolError(
                f"SCIM /{endpoint} did not answer JSON (Content-Type {content_type})", status=status
            ) from exc


def _detail(response: requests.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return ""
    detail = payload.get("detail") if isinstance(payload, dict) else None
    return f": {detail}" if isinstance(detail, str) and detail else ""


def _parse_list_response(payload: Any, endpoint: str) -> tuple[list[dict[str, Any]], int]:
    if not isinstance(payload, dict):
        raise ScimProtocolError(f"SCIM /{endpoint} answered a {type(payload).__name__}, not a ListResponse object")
    schemas = payload.get("schemas")
    if not isinstance(schemas, list) or LIST_RESPONSE_SCHEMA not in schemas:
        raise ScimProtocolError(f"SCIM /{endpoint} answer does not carry the ListResponse schema")
    total = payload.get("totalResults")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise ScimProtocolError(f"SCIM /{endpoint} answer has no valid totalResults")
    resources = payload.get("Resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
        raise ScimProtocolError(f"SCIM /{endpoint} answer has a Resources member that is not a list of objects")
    for resource in resources:
        if not isinstance(resource.get("id"), str) or not resource["id"]:
            raise ScimProtocolError(f"SCIM /{endpoint} returned a resource without an id")
    return resources, total


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _primary_email(resource: dict[str, Any]) -> str:
    emails = resource.get("emails")
    if not isinstance(emails, list):
        emails = []
    entries = [e for e in emails if isinstance(e, dict) and _text(e.get("value"))]
    chosen = next((e for e in entries if e.get("primary") is True), None)
    chosen = chosen or next((e for e in entries if e.get("type") == "work"), None)
    chosen = chosen or (entries[0] if entries else None)
    if chosen is not None:
        return _text(chosen["value"]).lower()
    user_name = _text(resource.get("userName"))
    return user_name.lower() if "@" in user_name else ""


def _display_name(resource: dict[str, Any]) -> str:
    name = resource.get("name") if isinstance(resource.get("name"), dict) else {}
    formatted = _text(name.get("formatted"))
    if formatted:
        return formatted
    parts = " ".join(p for p in (_text(name.get("givenName")), _text(name.get("familyName"))) if p)
    return parts or _text(resource.get("displayName")) or _text(resource.get("userName"))


def normalize_user(resource: dict[str, Any]) -> ScimUser:
    user_name = _text(resource.get("userName"))
    if not user_name:
        raise ScimProtocolError(f"SCIM user {resource['id']} has no userName")
    active = resource.get("active")
    return ScimUser(
        id=resource["id"],
        user_name=user_name,
        email=_primary_email(resource),
        name=_display_name(resource),
        # RFC 7643 leaves `active` optional; a provider that omits it does not deactivate.
        active=active is not False,
        external_id=_text(resource.get("externalId")),
    )


def normalize_group(resource: dict[str, Any]) -> ScimGroup:
    display_name = _text(resource.get("displayName"))
    if not display_name:
        raise ScimProtocolError(f"SCIM group {resource['id']} has no displayName")
    members = resource.get("members") or []
    if not isinstance(members, list):
        raise ScimProtocolError(f"SCIM group {display_name!r} has members that are not a list")
    member_ids = tuple(
        _text(m.get("value"))
        for m in members
        if isinstance(m, dict) and _text(m.get("value")) and m.get("type") in (None, "User")
    )
    return ScimGroup(id=resource["id"], display_name=display_name, member_ids=member_ids)
