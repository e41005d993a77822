"""Inventory API under /api/v1/orgs/<slug>/: imports, identities, applications, entitlements."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from thalian.api import OrgAPIView
from thalian.pagination import IdCursorPagination
from thalian.permissions import Perm

from . import selectors, services
from .csv_import import KINDS, ImportValidationError
from .models import Application, Entitlement, Identity, SyncRun


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
                description="The file has problems; nothing was imported. A missing or invalid form field "
                "answers the usual validation error instead.",
            ),
        },
    )
    def post(self, request, org_slug):
        data = ImportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
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


class ApplicationListAPI(FilteredListAPI):
    """Applications; filters: category, sanctioned, search / name."""

    serializer_class = ApplicationSerializer
    selector = staticmethod(selectors.applications_filtered)


class EntitlementListAPI(FilteredListAPI):
    """Present grants; filters: application and department (by name), kind, status, role, finding,
    sanctioned, identity (e-mail), search (identity e-mail or name), include_removed."""

    serializer_class = EntitlementSerializer
    selector = staticmethod(selectors.entitlements_filtered)
