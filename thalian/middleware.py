import json

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render

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
    """Headers Django does not set itself (the Content-Security-Policy comes from django-csp's middleware)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response


class NulCharacterMiddleware:
    """A NUL character in the path, a query parameter, a form field or a JSON body answers 400 naming the
    parameter. PostgreSQL cannot store or compare text containing NUL, so letting it through would fail deep
    inside a query instead."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        problem = self._problem(request)
        if problem is None:
            return self.get_response(request)
        message = f"{problem} contains a NUL character (\\x00), which is not allowed."
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": message, "errors": {"non_field_errors": [message]}}, status=400)
        return render(request, "400.html", {"message": message}, status=400)

    @staticmethod
    def _problem(request) -> str | None:
        if "\x00" in request.path:
            return "The address"
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return f"The query parameter {name.replace(chr(0), '')!r}"
        content_type = request.content_type or ""
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            # Django parses form bodies of POSTs only; DRF takes the parsed form over when it reads the request.
            if request.method == "POST" and content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                for name, values in request.POST.lists():
                    if "\x00" in name or any("\x00" in value for value in values):
                        return f"The form field {name.replace(chr(0), '')!r}"
            elif content_type.endswith("json") and _json_has_nul(request.body):
                return "The request body"
        return None


def _json_has_nul(body: bytes) -> bool:
    if b"\x00" in body:
        return True
    if b"\\u0000" not in body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False  # the parser names the syntax error
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False
