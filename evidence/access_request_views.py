"""Evidence of access requests: one request's trail as CSV, and the signed access requests report for a period
(page and API)."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from access_requests.selectors import request_for_member
from thalian.access import org_view
from thalian.api import OrgAPIView
from thalian.permissions import Perm

from . import formats
from .access_requests import access_requests_report_stream, period_clean, report_file_name, trail_csv
from .items_csv import ExportError, scoped_stream
from .views import ERROR, ZIP_RESPONSE, _attachment


def _trail_response(request, request_id):
    req = request_for_member(member=request.membership, request_id=request_id)
    response = StreamingHttpResponse(scoped_stream(request.organization.pk, trail_csv(req)),
                                     content_type="text/csv; charset=utf-8")
    return _attachment(response, f"access-request-{req.pk}-trail.csv")


def _report_response(request, start, end):
    chunks = access_requests_report_stream(organization=request.organization, start=start, end=end,
                                           actor=request.membership, request=request)
    response = StreamingHttpResponse(scoped_stream(request.organization.pk, chunks), content_type="application/zip")
    return _attachment(response, report_file_name(organization=request.organization, start=start, end=end))


@require_GET
@org_view(Perm.REQUEST_ACCESS)
def access_request_trail_csv(request, request_id):
    return _trail_response(request, request_id)


@require_GET
@org_view(Perm.EXPORT_EVIDENCE)
def access_requests_report(request):
    today = timezone.localdate()
    start = request.GET.get("start") or today.replace(day=1).isoformat()
    end = request.GET.get("end") or today.isoformat()
    error = ""
    if request.GET.get("download"):
        try:
            period = period_clean(start=start, end=end)
            return _report_response(request, *period)
        except ExportError as exc:
            error = str(exc)
        except formats.SigningKeyError as exc:
            error = f"Evidence signing is not configured: {exc}"
    return render(request, "evidence/access_requests_report.html", {"start": start, "end": end, "error": error},
                  status=400 if error else 200)


class AccessRequestTrailCsvAPI(OrgAPIView):
    required_perms = {"GET": Perm.REQUEST_ACCESS}

    @extend_schema(operation_id="access_request_trail_csv", responses={(200, "text/csv"): ZIP_RESPONSE},
                   summary="An access request's trail as CSV", tags=["access requests"])
    def get(self, request, org_slug, request_id):
        return _trail_response(request, request_id)


class AccessRequestsReportAPI(OrgAPIView):
    """Every access request made in [start, end] with its stages and trail, as a signed evidence ZIP."""

    required_perms = {"GET": Perm.EXPORT_EVIDENCE}

    @extend_schema(operation_id="access_requests_report",
                   parameters=[OpenApiParameter("start", str, required=True), OpenApiParameter("end", str,
                                                                                               required=True)],
                   responses={(200, "application/zip"): ZIP_RESPONSE, 400: ERROR, 503: ERROR},
                   summary="Access requests report (signed ZIP)", tags=["access requests"])
    def get(self, request, org_slug):
        try:
            start, end = period_clean(start=request.query_params.get("start"), end=request.query_params.get("end"))
        except ExportError as exc:
            field, _, message = str(exc).partition(": ")
            raise ValidationError({field: [message]}) from None
        try:
            return _report_response(request, start, end)
        except formats.SigningKeyError as exc:
            return Response({"detail": f"Evidence signing is not configured: {exc}"}, status=503)
