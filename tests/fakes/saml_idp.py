"""A real SAML 2.0 identity provider on 127.0.0.1: pysaml2's IdP machinery (saml2.server.Server) behind a
small WSGI app, with a generated self-signed signing key.

Endpoints: GET /metadata (IdP metadata), GET /sso/redirect (HTTP-Redirect AuthnRequest -> an HTML form that
POSTs the signed response to the SP's ACS, as real IdPs do), GET /idp-initiated?sp=<entity id>&acs=<url>
(an unsolicited response). Knobs for refusal tests: `sign`, `audience`, `lifetime_minutes`.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


def self_signed_pair(directory: Path, name: str = "idp") -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class SamlIdp:
    def __init__(self, directory: Path, *, name: str = "idp") -> None:
        self.key_file, self.cert_file = self_signed_pair(directory, name)
        self.user: dict = {"email": "alice@example.com", "groups": []}
        self.sign = True
        self.audience: str | None = None
        self.lifetime_minutes = 5
        self.sp_metadata: list[str] = []
        self.server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        self.entity_id = f"{self.base_url}/metadata"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> SamlIdp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _config(self) -> IdPConfig:
        config = IdPConfig()
        config.load({
            "entityid": self.entity_id,
            "xmlsec_binary": "/usr/bin/xmlsec1",
            "key_file": str(self.key_file),
            "cert_file": str(self.cert_file),
            "allow_unknown_attributes": True,
            "service": {
                "idp": {
                    "endpoints": {"single_sign_on_service": [(f"{self.base_url}/sso/redirect", BINDING_HTTP_REDIRECT)]},
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    "policy": {"default": {"lifetime": {"minutes": self.lifetime_minutes}, "name_form": NAME_FORMAT_BASIC}},
                }
            },
            "metadata": {"inline": self.sp_metadata} if self.sp_metadata else {},
        })
        return config

    def metadata(self) -> str:
        return str(entity_descriptor(self._config()))

    def response(self, *, sp_entity_id: str, acs_url: str, in_response_to: str | None) -> str:
        """A base64 SAMLResponse for the current user, signed (or not) as configured."""
        server = Server(config=self._config())
        email = self.user["email"]
        identity = {"email": [email]}
        if self.user.get("groups"):
            identity["groups"] = list(self.user["groups"])
        response = server.create_authn_response(
            identity=identity,
            in_response_to=in_response_to,
            destination=acs_url,
            sp_entity_id=self.audience or sp_entity_id,
            userid=email,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email),
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
            sign_assertion=self.sign,
            sign_response=False,
        )
        return base64.b64encode(str(response).encode()).decode()

    def _post_form(self, acs_url: str, saml_response: str, relay_state: str) -> Response:
        body = (
            "<!doctype html><html lang='en'><head><title>Test IdP</title></head><body><main>"
            f"<h1>Test IdP: signed in as {html.escape(self.user['email'])}</h1>"
            f"<form method='post' action='{html.escape(acs_url)}'>"
            f"<input type='hidden' name='SAMLResponse' value='{saml_response}'>"
            f"<input type='hidden' name='RelayState' value='{html.escape(relay_state)}'>"
            "<button type='submit'>Continue to the service</button></form></main></body></html>"
        )
        return Response(body, content_type="text/html")

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        if request.path == "/metadata":
            response = Response(self.metadata(), content_type="application/samlmetadata+xml")
        elif request.path == "/sso/redirect":
            server = Server(config=self._config())
            parsed = server.parse_authn_request(request.args["SAMLRequest"], BINDING_HTTP_REDIRECT)
            message = parsed.message
            acs_url = message.assertion_consumer_service_url or server.metadata.assertion_consumer_service(
                message.issuer.text, BINDING_HTTP_POST
            )[0]["location"]
            saml_response = self.response(
                sp_entity_id=message.issuer.text, acs_url=acs_url, in_response_to=message.id
            )
            response = self._post_form(acs_url, saml_response, request.args.get("RelayState", ""))
        elif request.path == "/idp-initiated":
            acs_url = request.args["acs"]
            saml_response = self.response(sp_entity_id=request.args["sp"], acs_url=acs_url, in_response_to=None)
            response = self._post_form(acs_url, saml_response, request.args.get("relay", ""))
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)
