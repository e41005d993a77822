from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from .access import org_view


@login_required
def home(request):
    """Send people to the organization they used last, or let them pick one."""
    memberships = list(request.user.memberships.select_related("organization").order_by("organization__name"))
    last = request.session.get("last_org")
    for m in memberships:
        if m.organization.slug == last:
            return redirect("org_dashboard", org_slug=last)
    if len(memberships) == 1:
        return redirect("org_dashboard", org_slug=memberships[0].organization.slug)
    return render(request, "thalian/choose_org.html", {"memberships": memberships})


@org_view()
def dashboard(request):
    return render(request, "thalian/dashboard.html")


@require_GET
def healthz(request):
    """Database and broker reachability, for load balancers: 200 when both answer, 503 otherwise."""
    from django.conf import settings

    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        checks["database"] = f"error: {exc.__class__.__name__}"
    if settings.REDIS_URL:
        try:
            import redis

            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
            checks["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["broker"] = f"error: {exc.__class__.__name__}"
    else:
        checks["broker"] = "ok (eager, in process)"
    healthy = all(v.startswith("ok") for v in checks.values())
    return JsonResponse({"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503)
