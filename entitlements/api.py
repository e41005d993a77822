"""Inventory API under /api/v1/orgs/<slug>/: imports, identities, applications, entitlements."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from thalian.api import ErrorSerializer, OrgAPIView
from thalian.pagination import IdCursorPagination
from thalian.permissions import Perm

from . import selectors, services
from .csv_import import KINDS, ImportValidationError
from .models import (
    Application,
    Entitlement,
    Finding,
    Identity,
    IdentityKind,
    IdentityStatus,
    ScimConnector,
    SyncRun,
)


class SyncRunSerializer(serializers.ModelSerializer):
    progress_rows = serializers.SerializerMethodField()

    class Meta:
        model = SyncRun
        fields = [
            "id", "source", "kind", "mode", "file_name", "status", "started_at", "finished_at", "total_rows",
            "processed_rows", "progress_rows", "created", "updated", "removed", "unchanged", "identities_created",
            "error", "errors", "attempt",
        ]

    def get_progress_rows(self, run: SyncRun) -> int:
        if run.status == "running":
            return services.import_progress(run.pk) or 0
        return run.processed_rows


class IdentitySerializer(serializers.ModelSerializer):
    manager_email = serializers.SerializerMethodField()

    class Meta:
        model = Identity
        fields = ["id", "email", "name", "department", "title", "kind", "status", "manager_email"]

    def get_manager_email(self, identity: Identity) -> str | None:
        return identity.manager.email if identity.manager_id else None


class ApplicationSerializer(serializers.ModelSerializer):
    data_as_of = serializers.DateTimeField(source="last_synced_at", read_only=True)

    class Meta:
        model = Application
        fields = [
            "id", "name", "category", "sanctioned", "owner_email", "remediation_owner_email", "feed", "data_as_of",
        ]


class EntitlementIdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = Identity
        fields = ["id", "email", "name", "department", "kind", "status"]


class EntitlementApplicationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Application
        fields = ["id", "name", "sanctioned"]


class EntitlementSerializer(serializers.ModelSerializer):
    identity = EntitlementIdentitySerializer(read_only=True)
    application = EntitlementApplicationSerializer(read_only=True)
    findings = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = Entitlement
        fields = [
            "id", "identity", "application", "role", "last_used", "source", "first_seen", "last_seen", "present",
            "removed_at", "findings",
        ]


class IdentityGrantSerializer(EntitlementSerializer):
    """A grant listed under its identity: the entitlement without the identity again."""

    identity = None

    class Meta(EntitlementSerializer.Meta):
        fields = [name for name in EntitlementSerializer.Meta.fields if name != "identity"]


class IdentityDetailSerializer(IdentitySerializer):
    external_ids = serializers.DictField(child=serializers.CharField(), read_only=True)
    present_count = serializers.IntegerField(source="access.present", read_only=True)
    removed_count = serializers.IntegerField(source="access.removed", read_only=True)
    entitlements = IdentityGrantSerializer(source="access.grants", many=True, read_only=True)

    class Meta(IdentitySerializer.Meta):
        fields = [*IdentitySerializer.Meta.fields, "external_ids", "created_at", "present_count", "removed_count",
                  "entitlements"]


class ImportRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=KINDS)
    mode = serializers.ChoiceField(choices=services.MODES, default="merge")
    file = serializers.FileField()


class SyncRunEnvelopeSerializer(serializers.Serializer):
    sync_run = SyncRunSerializer()


class SyncRunListSerializer(serializers.Serializer):
    results = SyncRunSerializer(many=True, help_text="The 50 most recent runs, newest first.")


class ImportRowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="Line in the file (the header is line 1); 0 for the file as a whole.")
    column = serializers.CharField()
    message = serializers.CharField()


class ImportRejectedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    error_count = serializers.IntegerField(help_text="Every problem found, including those not listed.")
    errors = ImportRowErrorSerializer(many=True)


class ImportListCreateAPI(OrgAPIView):
    """POST a CSV file (multipart: kind, file, optional mode). 201 with the counts when imported at once,
    202 with the run to poll when the file is big enough to be queued, 400 listing every problem."""

    required_perms = {"GET": Perm.VIEW_INVENTORY, "POST": Perm.MANAGE_INVENTORY}
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = ImportRequestSerializer

    @extend_schema(operation_id="orgs_imports_list", responses=SyncRunListSerializer)
    def get(self, request, org_slug):
        return Response({"results": SyncRunSerializer(selectors.sync_runs_recent(limit=50), many=True).data})

    @extend_schema(
        request=ImportRequestSerializer,
        responses={
            201: SyncRunEnvelopeSerializer,
            202: SyncRunEnvelopeSerializer,
            400: OpenApiResponse(
                ImportRejectedSerializer,
                description="The file has problems, or a form field is missing or invalid (row 0, the field "
                "name as column); nothing was imported.",
            ),
        },
    )
    def post(self, request, org_slug):
        data = ImportRequestSerializer(data=request.data)
        if not data.is_valid():
            # One error shape for this endpoint: a bad form field is a problem of the file as a whole (row 0).
            problems = [
                {"row": 0, "column": field, "message": str(message)}
                for field, messages in data.errors.items()
                for message in (messages if isinstance(messages, list) else [messages])
            ]
            return Response(
                {
                    "detail": "Invalid input. " + "; ".join(f"{p['column']}: {p['message']}" for p in problems),
                    "error_count": len(problems),
                    "errors": problems,
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        upload = data.validated_data["file"]
        try:
            submission = services.inventory_import_submit(
                organization=request.organization,
                kind=data.validated_data["kind"],
                mode=data.validated_data["mode"],
                upload=upload,
                file_name=upload.name,
                size=upload.size,
                actor=request.user,
            )
        except ImportValidationError as exc:
            return Response(
                {
                    "detail": f"{exc.total} problem(s) found; nothing was imported.",
                    "error_count": exc.total,
                    "errors": [e.as_dict() for e in exc.errors],
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        code = status.HTTP_202_ACCEPTED if submission.queued else status.HTTP_201_CREATED
        return Response({"sync_run": SyncRunSerializer(submission.run).data}, status=code)


class ImportDetailAPI(OrgAPIView):
    required_perms = {"GET": Perm.VIEW_INVENTORY}

    @extend_schema(responses=SyncRunEnvelopeSerializer)
    def get(self, request, org_slug, pk: int):
        return Response({"sync_run": SyncRunSerializer(get_object_or_404(SyncRun, pk=pk)).data})


class RunActionErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class _RunActionAPI(OrgAPIView):
    required_perms = {"POST": Perm.MANAGE_INVENTORY}
    run_action = staticmethod(services.sync_run_cancel)

    def post(self, request, org_slug, pk: int):
        run = get_object_or_404(SyncRun, pk=pk)
        try:
            run = self.run_action(run=run, actor=request.user, request=request)
        except services.RunActionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response({"sync_run": SyncRunSerializer(run).data})


class ImportCancelAPI(_RunActionAPI):
    """Give up on a queued import or sync, or one whose worker is gone; its upload is deleted. 409 when it
    already finished or a live worker is carrying it out."""

    run_action = staticmethod(services.sync_run_cancel)

    @extend_schema(operation_id="imports_cancel", request=None,
                   responses={200: SyncRunEnvelopeSerializer, 409: RunActionErrorSerializer})
    def post(self, request, org_slug, pk: int):
        return super().post(request, org_slug, pk)


class ImportRetryAPI(_RunActionAPI):
    """Send a queued or interrupted file import to a worker again now. 409 when it finished, a live worker
    is carrying it out, or its upload is gone."""

    run_action = staticmethod(services.sync_run_retry)

    @extend_schema(operation_id="imports_retry", request=None,
                   responses={200: SyncRunEnvelopeSerializer, 409: RunActionErrorSerializer})
    def post(self, request, org_slug, pk: int):
        return super().post(request, org_slug, pk)


class FilteredListAPI(OrgAPIView, generics.ListAPIView):
    required_perms = {"GET": Perm.VIEW_INVENTORY}
    pagination_class = IdCursorPagination
    selector = None

    def get_queryset(self):
        try:
            return type(self).selector(self.request.query_params)
        except selectors.FilterError as exc:
            raise ValidationError({"filter": [str(exc)]}) from exc


def _filter(name: str, description: str, enum=None) -> OpenApiParameter:
    return OpenApiParameter(name, str, description=description, enum=[c.value for c in enum] if enum else None)


YES_NO = "yes or no (also true/false, 1/0)"
IDENTITY_FILTERS = [
    _filter("department", "department name (exact, any case)"),
    _filter("kind", "identity kind", IdentityKind),
    _filter("status", "identity status", IdentityStatus),
]
SEARCH = _filter("search", "part of the e-mail or name")


@extend_schema_view(get=extend_schema(parameters=[
    *IDENTITY_FILTERS,
    _filter("application", "holds a present grant in this application (name, exact, any case)"),
    SEARCH,
]))
class IdentityListAPI(FilteredListAPI):
    """Identities; filters: department, kind, status, application (name), search (e-mail or name)."""

    serializer_class = IdentitySerializer
    selector = staticmethod(selectors.identities_filtered)


class IdentityDetailAPI(OrgAPIView):
    """One identity with its grants, present first then removed (the first 500; the entitlements list
    filtered by `identity=<e-mail>&include_removed=yes` pages through all of them)."""

    required_perms = {"GET": Perm.VIEW_INVENTORY}

    @extend_schema(responses=IdentityDetailSerializer)
    def get(self, request, org_slug, pk: int):
        identity = selectors.identity_for_page(pk)
        identity.access = selectors.identity_access(identity)
        return Response(IdentityDetailSerializer(identity).data)


@extend_schema_view(get=extend_schema(parameters=[
    _filter("category", "category (exact, any case)"),
    _filter("sanctioned", YES_NO),
    _filter("search", "part of the application name"),
    _filter("name", "part of the application name (same as search)"),
]))
class ApplicationListAPI(FilteredListAPI):
    """Applications; filters: category, sanctioned, search / name."""

    serializer_class = ApplicationSerializer
    selector = staticmethod(selectors.applications_filtered)


@extend_schema_view(get=extend_schema(parameters=[
    *IDENTITY_FILTERS,
    _filter("application", "application name (exact, any case)"),
    OpenApiParameter("application_id", int, description="application id"),
    _filter("identity", "identity e-mail (exact)"),
    _filter("role", "role (exact, any case)"),
    _filter("finding", "grants with this finding", Finding),
    _filter("sanctioned", "the application is sanctioned: " + YES_NO),
    SEARCH,
    _filter("include_removed", "also grants no longer present: " + YES_NO),
]))
class EntitlementListAPI(FilteredListAPI):
    """Present grants; filters: application and department (by name), kind, status, role, finding,
    sanctioned, identity (e-mail), search (identity e-mail or name), include_removed."""

    serializer_class = EntitlementSerializer
    selector = staticmethod(selectors.entitlements_filtered)


# SCIM connectors: one per application, as on the application's page ------------------------------------


class ScimConnectorSerializer(serializers.ModelSerializer):
    application = serializers.IntegerField(source="application_id", read_only=True)
    token_set = serializers.SerializerMethodField(help_text="A bearer token is stored (it is never shown).")

    class Meta:
        model = ScimConnector
        fields = ["application", "base_url", "enabled", "sync_interval_hours", "token_set", "last_attempt_at",
                  "created_at", "updated_at"]
        read_only_fields = fields

    def get_token_set(self, connector: ScimConnector) -> bool:
        return bool(connector.token)


class ScimConnectorInputSerializer(serializers.Serializer):
    base_url = serializers.URLField(max_length=500, help_text="The SCIM 2.0 base URL, e.g. https://idp.example.com/scim/v2")
    token = serializers.CharField(
        required=False, allow_blank=True, write_only=True, max_length=4000, trim_whitespace=True,
        help_text="Bearer token, stored encrypted; required when creating, omit or leave empty to keep it.",
    )
    enabled = serializers.BooleanField(default=True, help_text="Sync on a schedule")
    sync_interval_hours = serializers.IntegerField(min_value=1, max_value=720, default=24)


class SyncRunPageSerializer(serializers.Serializer):
    results = SyncRunSerializer(many=True, help_text="The application's 20 most recent imports and syncs, newest first.")


def _connector_field(message: str) -> str:
    for prefix, field in (("Base URL", "base_url"), ("Bearer token", "token"), ("Sync interval", "sync_interval_hours")):
        if message.startswith(prefix):
            return field
    return "non_field_errors"


class ScimConnectorAPI(OrgAPIView):
    """The SCIM connector of an application: read it, create or change it (PUT), remove it (DELETE: the
    application is fed by file uploads again)."""

    required_perms = {"GET": Perm.VIEW_INVENTORY, "PUT": Perm.MANAGE_INVENTORY, "DELETE": Perm.MANAGE_INVENTORY}

    @extend_schema(operation_id="scim_connector_retrieve", responses=ScimConnectorSerializer)
    def get(self, request, org_slug, pk: int):
        application = selectors.application_for_page(pk)
        return Response(ScimConnectorSerializer(get_object_or_404(ScimConnector, application=application)).data)

    @extend_schema(
        operation_id="scim_connector_save",
        request=ScimConnectorInputSerializer,
        responses={200: ScimConnectorSerializer, 201: ScimConnectorSerializer, 400: ErrorSerializer},
    )
    def put(self, request, org_slug, pk: int):
        application = selectors.application_for_page(pk)
        existed = ScimConnector.objects.filter(application=application).exists()
        data = ScimConnectorInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            connector = services.scim_connector_save(application=application, actor=request.user, **data.validated_data)
        except services.ConnectorError as exc:
            raise ValidationError({_connector_field(str(exc)): [str(exc)]}) from exc
        code = status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        return Response(ScimConnectorSerializer(connector).data, status=code)

    @extend_schema(operation_id="scim_connector_delete", responses={204: None})
    def delete(self, request, org_slug, pk: int):
        application = selectors.application_for_page(pk)
        services.scim_connector_delete(
            connector=get_object_or_404(ScimConnector, application=application), actor=request.user
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ScimSyncNowAPI(OrgAPIView):
    """Sync now: queue a run of the application's SCIM connector; poll it at imports/<id>/."""

    required_perms = {"POST": Perm.MANAGE_INVENTORY}

    @extend_schema(operation_id="scim_connector_sync", request=None, responses={202: SyncRunEnvelopeSerializer})
    def post(self, request, org_slug, pk: int):
        application = selectors.application_for_page(pk)
        connector = get_object_or_404(ScimConnector, application=application)
        run = services.scim_sync_request(connector=connector, actor=request.user)
        return Response({"sync_run": SyncRunSerializer(run).data}, status=status.HTTP_202_ACCEPTED)


class ApplicationSyncRunsAPI(OrgAPIView):
    """The application's recent imports and SCIM syncs, as in its page's history."""

    required_perms = {"GET": Perm.VIEW_INVENTORY}

    @extend_schema(operation_id="application_sync_runs", responses=SyncRunPageSerializer)
    def get(self, request, org_slug, pk: int):
        application = selectors.application_for_page(pk)
        runs = selectors.application_sync_history(application)
        return Response({"results": SyncRunSerializer(runs, many=True).data})
