"""SAML 2.0 service provider per organization, built on pysaml2 (signature checks by xmlsec1).

Each organization is its own service provider: entity id …/sso/saml/<org>/metadata/, one assertion consumer
service …/sso/saml/<org>/acs/ for all its SAML identity providers (the response's issuer says which one).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.mdstore import InMemoryMetaData
from saml2.metadata import entity_descriptor
from saml2.response import IncorrectlySigned, StatusError, UnsolicitedResponse
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_UNSPECIFIED
from saml2.sigver import SignatureError
from saml2.validate import ResponseLifetimeExceed, ToEarly

from thalian.models import Organization

from .http import FetchError, fetch
from .models import IdentityProvider

EMAIL_ATTRIBUTES = (
    "email",
    "mail",
    "emailAddress",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "urn:oid:0.9.2342.19200300.100.1.3",
)


class SamlError(Exception):
    pass


def entity_id(organization: Organization) -> str:
    return f"{settings.SITE_URL}/sso/saml/{organization.slug}/metadata/"


def acs_url(organization: Organization) -> str:
    return f"{settings.SITE_URL}/sso/saml/{organization.slug}/acs/"


def idp_entity_id_from_metadata(xml: str) -> str:
    """The entity id of the one identity provider described by the metadata; a clear error otherwise."""
    if not xml.strip():
        raise FetchError("The SAML metadata is empty.")
    md = InMemoryMetaData(None, xml)
    try:
        md.load()
    except Exception as exc:  # noqa: BLE001 - pysaml2 raises many types for malformed XML
        raise FetchError(f"The SAML metadata is not valid XML metadata ({exc.__class__.__name__}).") from None
    idps = [eid for eid, desc in md.items() if "idpsso_descriptor" in desc]
    if not idps:
        raise FetchError("The SAML metadata describes no identity provider (no IDPSSODescriptor).")
    if len(idps) > 1:
        raise FetchError(f"The SAML metadata describes {len(idps)} identity providers; give the metadata of one.")
    eid = idps[0]
    if not md.certs(eid, "idpsso", "signing"):
        raise FetchError(f"The identity provider {eid} publishes no signing certificate in its metadata.")
    if not any(md.service(eid, "idpsso_descriptor", "single_sign_on_service", b) for b in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST)):
        raise FetchError(f"The identity provider {eid} publishes no single sign-on service (Redirect or POST).")
    return eid


def metadata_fetch(url: str) -> str:
    response = fetch(url, what="SAML metadata")
    return response.text


def _config(organization: Organization, providers: list[IdentityProvider]) -> SPConfig:
    conf = {
        "entityid": entity_id(organization),
        "xmlsec_binary": settings.SAML_XMLSEC_BINARY,
        "allow_unknown_attributes": True,
        "service": {
            "sp": {
                "name": f"Thalian ({organization.name})",
                "endpoints": {"assertion_consumer_service": [(acs_url(organization), BINDING_HTTP_POST)]},
                # IdP-initiated sign-in: responses without a request of ours are accepted (still signed,
                # addressed to us and fresh); replays are refused by assertion id.
                "allow_unsolicited": True,
                "authn_requests_signed": False,
                "want_response_signed": False,
                "want_assertions_signed": False,
                "want_assertions_or_response_signed": True,
                "name_id_format": [NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_UNSPECIFIED],
                "name_id_format_allow_create": False,
            }
        },
        "metadata": {"inline": [p.metadata_xml for p in providers if p.metadata_xml]},
        "accepted_time_diff": 60,
    }
    config = SPConfig()
    config.load(conf)
    return config


def sp_metadata(organization: Organization) -> str:
    ed = entity_descriptor(_config(organization, []))
    return str(ed)


def authn_request(organization: Organization, provider: IdentityProvider, *, relay_state: str) -> tuple[str, str]:
    """(request id, IdP address to redirect to) of an SP-initiated sign-in."""
    client = Saml2Client(config=_config(organization, [provider]))
    request_id, info = client.prepare_for_authenticate(
        entityid=provider.idp_entity_id, relay_state=relay_state, binding=BINDING_HTTP_REDIRECT
    )
    location = dict(info["headers"])["Location"]
    return request_id, location


@dataclass
class SamlIdentity:
    issuer: str
    subject: str
    email: str
    attributes: dict
    assertion_id: str


def response_parse(
    organization: Organization, providers: list[IdentityProvider], *, saml_response: str, outstanding: dict
) -> SamlIdentity:
    """Verifies a SAMLResponse (signature, issuer, audience, recipient, lifetime, request id) and returns who
    signed in. Raises SamlError with a message an administrator can act on."""
    if not providers:
        raise SamlError("this organization has no enabled SAML identity provider")
    client = Saml2Client(config=_config(organization, providers))
    try:
        response = client.parse_authn_request_response(saml_response, BINDING_HTTP_POST, outstanding=outstanding)
    except (IncorrectlySigned, SignatureError):
        raise SamlError("the response is not signed by the identity provider's certificate") from None
    except ResponseLifetimeExceed:
        raise SamlError("the assertion has expired") from None
    except ToEarly:
        raise SamlError("the assertion is not valid yet (check the identity provider's clock)") from None
    except UnsolicitedResponse:
        raise SamlError("the response answers a sign-in request that was not made here") from None
    except StatusError as exc:
        raise SamlError(f"the identity provider reported an error: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - pysaml2 signals other violations with plain exceptions
        text = str(exc)
        if "signed" in text.lower() or "signature" in text.lower():
            raise SamlError("the response is not signed by the identity provider's certificate") from None
        if "audience" in text.lower() or "not for me" in text.lower():
            raise SamlError("the assertion is addressed to another service provider (wrong audience)") from None
        raise SamlError(f"the response was refused ({exc.__class__.__name__}: {text[:200]})") from None
    if response is None or response.assertion is None:
        raise SamlError("the response carries no valid assertion (wrong audience, recipient or issuer)")
    if not (response.response.signature or response.assertion.signature):
        raise SamlError("the response is not signed by the identity provider's certificate")
    issuer = response.issuer()
    name_id = response.name_id.text if response.name_id is not None else ""
    ava = response.ava or {}
    email = ""
    for attribute in EMAIL_ATTRIBUTES:
        if ava.get(attribute):
            email = str(ava[attribute][0])
            break
    if not email and "@" in name_id:
        email = name_id
    return SamlIdentity(
        issuer=issuer, subject=name_id or email, email=email, attributes=ava, assertion_id=response.assertion.id
    )
