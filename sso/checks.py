"""Start-up check: SAML signatures need the xmlsec1 program."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.checks import Warning, register


@register()
def xmlsec_installed(app_configs, **kwargs):
    path = settings.SAML_XMLSEC_BINARY
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return []
    return [
        Warning(
            f"SAML_XMLSEC_BINARY ({path}) is not an executable file: SAML single sign-on cannot check signatures "
            "and refuses every response.",
            hint="Install xmlsec1 (Debian: apt-get install xmlsec1) or set SAML_XMLSEC_BINARY to its path.",
            id="sso.W001",
        )
    ]
