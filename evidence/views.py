"""Evidence pages and API: exports, the evidence package list, the summary report, sampling, public key."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns.models import Campaign, CampaignStatus
from campaigns.selectors import campaign_access
from thalian.access import org_view
from thalian.api import OrgAPIView
from thalian.audit import audit_record
from thalian.permissions import Perm

from . import formats
from .items_csv import DECISION_FILTERS, ExportError, items_csv_download, parse_item_filters
from .models import EvidencePackage, EvidencePackageStatus
from .packages import (
    evidence_package_cancel,
    evidence_package_create,
    evidence_package_request,
    evidence_package_retry,
    evidence_package_reusable,
    evidence_package_stream,
    evidence_state_digest,
    needs_background_build,
)
from .services import MAX_SAMPLE, campaign_summary, evidence_packages_for, evidence_sample_draw

PACKAGES_PER_PAGE = 50


def _attachment(response: HttpResponse, file_name: str) -> HttpResponse:
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _csv_response(request, campaign: Campaign, params) -> HttpResponse:
    filters = parse_item_filters(params)
    file_name, chunks = items_csv_download(
        campaign=campaign, filters=filters, actor=request.user, request=request
    )
    return _attachment(StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8"), file_name)


def _zip_stream_response(request, campaign: Campaign) -> HttpResponse:
    """The campaign's evidence package: the one kept for the current campaign state when there is one (same
    package, same bytes), else a new one streamed as it is built and kept."""
    formats.get_signing_key()  # fail before recording anything when signing is not configured
    digest = evidence_state_digest(campaign)
    existing = evidence_package_reusable(campaign=campaign, state_digest=digest)
    if existing is not None and existing.status == EvidencePackageStatus.READY:
        response = _package_download(request, existing)
        response["X-Evidence-Package"] = str(existing.pk)
        return response
    package = evidence_package_create(
        campaign=campaign, actor=request.user, stored=False, request=request, state_digest=digest
    )
    chunks = evidence_package_stream(package=package, campaign=campaign)
    response = StreamingHttpResponse(chunks, content_type="application/zip")
    response["X-Evidence-Package"] = str(package.pk)
    return _attachment(response, package.file_name)


def _package_download(request, package: EvidencePackage) -> HttpResponse:
    if not package.stored or package.status != EvidencePackageStatus.READY or not package.file:
        raise Http404("This package is not available for download")
    audit_record(
        action="evidence_package_downloaded",
        organization_id=package.organization_id,
        actor=request.user,
        request=request,
        target=package.campaign,
        details={"package_id": str(package.pk), "sha256": package.sha256, "stored": True},
    )
    response = FileResponse(package.file.open("rb"), content_type="application/zip")
    return _attachment(response, package.file_name)


def _get_package(package_id) -> EvidencePackage:
    package = EvidencePackage.objects.select_related("campaign").filter(pk=package_id).first()
    if package is None:
        raise Http404("No such evidence package")
    return package


# --------------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------------


@require_GET
@org_view(Perm.EXPORT_EVIDENCE, requires_plan=True)
def evidence_list(request):
    campaigns = (
        Campaign.objects.exclude(status=CampaignStatus.DRAFT)
        .only("id", "title", "status", "due_date", "snapshot_at", "item_count")
        .order_by("-created_at")
    )
    packages = Paginator(evidence_packages_for(membership=request.membership), PACKAGES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "campaigns": campaigns,
        "packages": packages,
        "polling": any(
            p.status in (EvidencePackageStatus.QUEUED, EvidencePackageStatus.BUILDING) for p in packages
        ),
        "fingerprint": _fingerprint_or_none(),
    }
    template = "evidence/list.html#packages" if request.htmx else "evidence/list.html"
    return render(request, template, context)


def _fingerprint_or_none() -> str | None:
    try:
        return formats.key_fingerprint(formats.get_signing_key())
    except formats.SigningKeyError:
        return None


@require_GET
@org_view(Perm.EXPORT_EVIDENCE, requires_plan=True)
def evidence_campaign_csv(request, campaign_id):
    campaign = campaign_access(
        membership=request.membership, campaign_id=campaign_id, perm=Perm.EXPORT_EVIDENCE
    )
    try:
        return _csv_response(request, campaign, request.GET)
    except ExportError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")


@require_GET
@org_view(Perm.EXPORT_EVIDENCE, requires_plan=True)
def evidence_campaign_zip(request, campaign_id):
    campaign = campaign_access(
        membership=request.membership, campaign_id=campaign_id, perm=Perm.EXPORT_EVIDENCE
    )
    try:
        if needs_background_build(campaign):
            package = evidence_package_request(campaign=campaign, actor=request.user, request=request)
            if package.status == EvidencePackageStatus.READY:
                return _package_download(request, package)  # the package of this very campaign state
            messages.info(
                request,
                f"“{campaign.title}” is large, so its evidence package is being built in the background. "
                f"It will be listed here as {package.file_name} when ready.",
            )
            return redirect("evidence_list", request.organization.slug)
        return _zip_stream_response(request, campaign)
    except formats.SigningKeyError as exc:
        return HttpResponse(
            f"Evidence signing is not configured: {exc}", status=503, content_type="text/plain"
        )


@require_GET
@org_view(Perm.EXPORT_EVIDENCE, requires_plan=True)
def evidence_package_download(request, package_id):
    return _package_download(request, _get_package(package_id))


def _package_action(request, package_id, action, success: str):
    """Cancel or retry a background package from the Evidence page; a refusal is shown as an error."""
    package = _get_package(package_id)
    try:
        action(package=package, actor=request.user, request=request)
    except ExportError as exc:
        messages.error(request, str(exc).capitalize() + ".")
    else:
        messages.success(request, success)
    return redirect("evidence_list", request.organization.slug)


@require_POST
@org_view(Perm.EXPORT_EVIDENCE, requires_plan=True)
def evidence_package_cancel_view(request, package_id):
    return _package_action(request, package_id, evidence_package_cancel, "The evidence package was cancelled.")


@require_POST
@org_view(Perm.EXPORT_EVIDENCE, requires_plan=True)
def evidence_package_retry_view(request, package_id):
    return _package_action(
        request, package_id, evidence_package_retry, "A new evidence package is being built in the background."
    )


@require_GET
@org_view(Perm.VIEW_ALL_CAMPAIGNS, requires_plan=True)
def evidence_campaign_report(request, campaign_id):
    campaign = campaign_access(
        membership=request.membership, campaign_id=campaign_id, perm=Perm.VIEW_ALL_CAMPAIGNS
    )
    return render(
        request,
        "evidence/report.html",
        {"campaign": campaign, "summary": campaign_summary(campaign=campaign)},
    )


@require_http_methods(["GET", "POST"])
@org_view(Perm.EXPORT_EVIDENCE, requires_plan=True)
def evidence_campaign_sample(request, campaign_id):
    campaign = campaign_access(
        membership=request.membership, campaign_id=campaign_id, perm=Perm.EXPORT_EVIDENCE
    )
    context = {"campaign": campaign, "max_sample": MAX_SAMPLE, "size": 10, "seed": "", "sample": None}
    status = 200
    if request.method == "POST":
        size_text = request.POST.get("size", "").strip()
        seed_text = request.POST.get("seed", "").strip()
        context.update(size=size_text, seed=seed_text)
        try:
            try:
                size = int(size_text)
            except ValueError:
                raise ExportError(f"sample size must be a whole number; got {size_text!r}") from None
            try:
                seed = int(seed_text) if seed_text else None
            except ValueError:
                raise ExportError(f"seed must be a whole number; got {seed_text!r}") from None
            sample = evidence_sample_draw(
                campaign=campaign, size=size, seed=seed, actor=request.user, request=request
            )
        except ExportError as exc:
            context["error"] = str(exc)[0].upper() + str(exc)[1:] + "."
            status = 400
        else:
            context.update(sample=sample, seed=sample.seed)
            context["trails"] = [(item, sample.trails[item.pk]) for item in sample.items]
    return render(request, "evidence/sample.html", context, status=status)


# --------------------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------------------


class EvidencePackageSerializer(serializers.ModelSerializer):
    campaign_id = serializers.UUIDField(read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = EvidencePackage
        fields = [
            "id", "campaign_id", "status", "stored", "progress", "progress_label", "file_name", "sha256", "size",
            "manifest_sha256", "chain_head", "item_count", "decision_count", "public_key_fingerprint",
            "generated_by_email", "created_at", "completed_at", "error", "download_url",
        ]  # fmt: skip

    def get_download_url(self, package: EvidencePackage) -> str | None:
        if not package.stored or package.status != EvidencePackageStatus.READY:
            return None
        request = self.context["request"]
        return request.build_absolute_uri(
            reverse("api_evidence_package_download", args=[request.organization.slug, package.pk])
        )


ERROR = inline_serializer("EvidenceError", {"detail": serializers.CharField()})
PACKAGE_PAGE = inline_serializer(
    "EvidencePackagePage",
    {
        "count": serializers.IntegerField(),
        "page": serializers.IntegerField(),
        "pages": serializers.IntegerField(),
        "results": EvidencePackageSerializer(many=True),
    },
)
ITEM_FILTER_PARAMETERS = [
    OpenApiParameter(
        "decision", str, enum=list(DECISION_FILTERS), description="Only items in this decision state."
    ),
    OpenApiParameter("application", str, description="Application name."),
    OpenApiParameter("department", str, description="Identity department."),
    OpenApiParameter("identity_kind", str, description="human, service_account, bot or ai_agent."),
    OpenApiParameter("finding", str, description="dormant, terminated, privileged, orphaned or never_used."),
    OpenApiParameter("search", str, description="Text in the identity, application or role."),
]
ZIP_RESPONSE = OpenApiResponse(OpenApiTypes.BINARY, description="The evidence ZIP.")


class CampaignExportCsvAPI(OrgAPIView):
    """The campaign's items as CSV (streamed); items-view filters apply."""

    required_perms = {"GET": Perm.EXPORT_EVIDENCE}
    requires_plan = True

    @extend_schema(
        operation_id="campaign_export_csv",
        parameters=ITEM_FILTER_PARAMETERS,
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="The items CSV."),
            400: ERROR,
        },
    )
    def get(self, request, org_slug, campaign_id):
        campaign = campaign_access(
            membership=request.membership, campaign_id=campaign_id, perm=Perm.EXPORT_EVIDENCE
        )
        try:
            return _csv_response(request, campaign, request.query_params)
        except ExportError as exc:
            return Response({"detail": str(exc)}, status=400)


class CampaignExportZipAPI(OrgAPIView):
    """The signed evidence package: streamed (200) for small campaigns; for large ones a background build is
    queued and its status returned (202), with a download URL once ready."""

    required_perms = {"GET": Perm.EXPORT_EVIDENCE}
    requires_plan = True

    @extend_schema(
        operation_id="campaign_export_zip",
        responses={(200, "application/zip"): ZIP_RESPONSE, 202: EvidencePackageSerializer, 503: ERROR},
    )
    def get(self, request, org_slug, campaign_id):
        campaign = campaign_access(
            membership=request.membership, campaign_id=campaign_id, perm=Perm.EXPORT_EVIDENCE
        )
        try:
            if needs_background_build(campaign):
                package = evidence_package_request(campaign=campaign, actor=request.user, request=request)
                data = EvidencePackageSerializer(package, context={"request": request}).data
                data["status_url"] = request.build_absolute_uri(
                    reverse("api_evidence_package_detail", args=[org_slug, package.pk])
                )
                return Response(data, status=202)
            return _zip_stream_response(request, campaign)
        except formats.SigningKeyError as exc:
            return Response({"detail": f"Evidence signing is not configured: {exc}"}, status=503)


class EvidencePackageListAPI(OrgAPIView):
    required_perms = {"GET": Perm.EXPORT_EVIDENCE}
    requires_plan = True

    @extend_schema(
        operation_id="evidence_packages_list",
        parameters=[
            OpenApiParameter("campaign", OpenApiTypes.UUID, description="Only this campaign's packages."),
            OpenApiParameter("page", int),
        ],
        responses=PACKAGE_PAGE,
    )
    def get(self, request, org_slug):
        packages = evidence_packages_for(membership=request.membership)
        campaign_id = request.query_params.get("campaign")
        if campaign_id:
            try:
                uuid.UUID(campaign_id)
            except ValueError:
                raise ValidationError({"campaign": [f"{campaign_id!r} is not a campaign id (a UUID)."]}) from None
            campaign = campaign_access(
                membership=request.membership, campaign_id=campaign_id, perm=Perm.EXPORT_EVIDENCE
            )
            packages = packages.filter(campaign=campaign)
        page = Paginator(packages, PACKAGES_PER_PAGE).get_page(request.query_params.get("page"))
        return Response(
            {
                "count": page.paginator.count,
                "page": page.number,
                "pages": page.paginator.num_pages,
                "results": EvidencePackageSerializer(
                    page.object_list, many=True, context={"request": request}
                ).data,
            }
        )


class EvidencePackageDetailAPI(OrgAPIView):
    required_perms = {"GET": Perm.EXPORT_EVIDENCE}
    requires_plan = True

    @extend_schema(operation_id="evidence_packages_retrieve", responses=EvidencePackageSerializer)
    def get(self, request, org_slug, package_id):
        package = _get_package(package_id)
        return Response(EvidencePackageSerializer(package, context={"request": request}).data)


def _package_action_response(request, package_id, action, *, status: int) -> Response:
    """Cancel or retry through the API: the resulting package, or 409 saying why the action does not apply."""
    try:
        package = action(package=_get_package(package_id), actor=request.user, request=request)
    except ExportError as exc:
        return Response({"detail": str(exc)}, status=409)
    return Response(EvidencePackageSerializer(package, context={"request": request}).data, status=status)


class EvidencePackageCancelAPI(OrgAPIView):
    """Stop waiting for a queued or building package: it is marked failed (409 if it is not in progress)."""

    required_perms = {"POST": Perm.EXPORT_EVIDENCE}
    requires_plan = True

    @extend_schema(operation_id="evidence_packages_cancel", request=None,
                   responses={200: EvidencePackageSerializer, 409: ERROR})
    def post(self, request, org_slug, package_id):
        return _package_action_response(request, package_id, evidence_package_cancel, status=200)


class EvidencePackageRetryAPI(OrgAPIView):
    """Request a new background package for the campaign of a failed one (202 with the new package, 409 if
    the package did not fail)."""

    required_perms = {"POST": Perm.EXPORT_EVIDENCE}
    requires_plan = True

    @extend_schema(operation_id="evidence_packages_retry", request=None,
                   responses={202: EvidencePackageSerializer, 409: ERROR})
    def post(self, request, org_slug, package_id):
        return _package_action_response(request, package_id, evidence_package_retry, status=202)


class EvidencePackageDownloadAPI(OrgAPIView):
    required_perms = {"GET": Perm.EXPORT_EVIDENCE}
    requires_plan = True

    @extend_schema(
        operation_id="evidence_packages_download", responses={(200, "application/zip"): ZIP_RESPONSE}
    )
    def get(self, request, org_slug, package_id):
        return _package_download(request, _get_package(package_id))


class EvidencePublicKeyAPI(APIView):
    """The Ed25519 public key that signs evidence manifests (PEM). Public: anyone verifying a package needs it."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="evidence_public_key",
        auth=[],
        responses={
            (200, "application/x-pem-file"): OpenApiResponse(OpenApiTypes.STR, description="PEM public key."),
            503: ERROR,
        },
    )
    def get(self, request):
        try:
            key = formats.get_signing_key()
        except formats.SigningKeyError as exc:
            return Response({"detail": f"Evidence signing is not configured: {exc}"}, status=503)
        response = HttpResponse(formats.public_key_pem(key), content_type="application/x-pem-file")
        response["X-Key-Fingerprint"] = formats.key_fingerprint(key)
        response["Content-Disposition"] = 'inline; filename="thalian-evidence.pem"'
        return response


# The auditor's report and sampling, as on the campaign's report and sample pages ---------------------------


class _ReportCampaignSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    status = serializers.CharField()
    due_date = serializers.DateField()
    snapshot_at = serializers.DateTimeField(allow_null=True)


class _ReportTotalsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    decided = serializers.IntegerField()
    pending = serializers.IntegerField()
    percent = serializers.IntegerField(help_text="Share of items decided, in percent")
    approve = serializers.IntegerField()
    revoke = serializers.IntegerField()
    exception = serializers.IntegerField()
    system = serializers.IntegerField(help_text="Items decided by the campaign's default outcome")
    identities = serializers.IntegerField()
    applications = serializers.IntegerField()
    first_decision = serializers.DateTimeField(allow_null=True)
    last_decision = serializers.DateTimeField(allow_null=True)


class _ReportReviewerSerializer(serializers.Serializer):
    reviewer_email = serializers.CharField()
    items = serializers.IntegerField()
    decided = serializers.IntegerField()
    revoked = serializers.IntegerField()
    signed_off = serializers.DateTimeField(allow_null=True)


class _ReportRevocationSerializer(serializers.Serializer):
    application_name = serializers.CharField()
    total = serializers.IntegerField()
    ticketed = serializers.IntegerField()
    pending = serializers.IntegerField()
    verified = serializers.IntegerField()
    action_required = serializers.IntegerField()
    untracked = serializers.IntegerField()


class CampaignReportSerializer(serializers.Serializer):
    campaign = _ReportCampaignSerializer()
    totals = _ReportTotalsSerializer()
    reviewers = _ReportReviewerSerializer(many=True)
    revocations = _ReportRevocationSerializer(many=True, help_text="Revoked access per application and its removal")
    population = serializers.JSONField(help_text="The population certificate of the evidence package")


class CampaignReportAPI(OrgAPIView):
    """The campaign report: totals, reviewers, revocations and their removal, and the population certificate."""

    required_perms = {"GET": Perm.VIEW_ALL_CAMPAIGNS}
    requires_plan = True

    @extend_schema(operation_id="campaign_report", responses=CampaignReportSerializer)
    def get(self, request, org_slug, campaign_id):
        campaign = campaign_access(
            membership=request.membership, campaign_id=campaign_id, perm=Perm.VIEW_ALL_CAMPAIGNS
        )
        summary = campaign_summary(campaign=campaign)
        data = {"campaign": campaign, **{key: summary[key] for key in ("totals", "reviewers", "revocations")},
                "population": summary["population"]}
        return Response(CampaignReportSerializer(data).data)


class SampleRequestSerializer(serializers.Serializer):
    size = serializers.IntegerField(min_value=1, max_value=MAX_SAMPLE, help_text="How many items to draw")
    seed = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**63 - 1,
        help_text="Repeat an earlier draw over the same campaign; a new one is chosen when omitted",
    )


class _SampleEventSerializer(serializers.Serializer):
    created_at = serializers.DateTimeField()
    decision = serializers.CharField()
    actor_email = serializers.CharField()
    actor_role = serializers.CharField()
    kind = serializers.CharField()
    reason = serializers.CharField()
    hash = serializers.CharField()


class _SampleItemSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    identity_email = serializers.CharField()
    application_name = serializers.CharField()
    role = serializers.CharField()
    reviewer_email = serializers.CharField()
    decision = serializers.CharField()
    decided_by_email = serializers.CharField()
    ticket_key = serializers.CharField()
    ticket_url = serializers.CharField()
    remediation_status = serializers.CharField()
    trail = _SampleEventSerializer(many=True, help_text="Every decision on the item, oldest first")


class SampleSerializer(serializers.Serializer):
    seed = serializers.IntegerField()
    size = serializers.IntegerField()
    population = serializers.IntegerField(help_text="Items in the campaign")
    items = _SampleItemSerializer(many=True)


class CampaignSampleAPI(OrgAPIView):
    """Draw a random sample of the campaign's items with their decision trails (recorded in the audit log)."""

    required_perms = {"POST": Perm.EXPORT_EVIDENCE}
    requires_plan = True

    @extend_schema(operation_id="campaign_sample", request=SampleRequestSerializer,
                   responses={200: SampleSerializer, 400: ERROR})
    def post(self, request, org_slug, campaign_id):
        campaign = campaign_access(
            membership=request.membership, campaign_id=campaign_id, perm=Perm.EXPORT_EVIDENCE
        )
        data = SampleRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            sample = evidence_sample_draw(
                campaign=campaign, size=data.validated_data["size"], seed=data.validated_data.get("seed"),
                actor=request.user, request=request,
            )
        except ExportError as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from exc
        for item in sample.items:
            item.trail = sample.trails[item.pk]
        return Response(SampleSerializer(sample).data)
