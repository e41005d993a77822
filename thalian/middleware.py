from django.conf import settings

from . import tenancy


class OrganizationScopeMiddleware:
    """Runs every request inside ``tenancy.request_scope()``: pages and API views activate their organization's
    scope within it, and it is left when the response is returned or an exception escapes the view."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with tenancy.request_scope():
            return self.get_response(request)


class SecurityHeadersMiddleware:
    """Content-Security-Policy on every response (self only: no inline script, no inline style)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response
