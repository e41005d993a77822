"""Exceptions page and API: every exception decision with its expiry, filtered by active, expiring or expired."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError

from thalian.access import org_view
from thalian.api import OrgAPIView
from thalian.pagination import IdCursorPagination
from thalian.permissions import Perm

from .exceptions import EXCEPTION_STATUSES, ExceptionFilterError, exception_status, exceptions_list
from .models import ReviewItem

PAGE_SIZE = 50
STATUS_TABS = [("", "All"), ("active", "Active"), ("expiring", "Expiring within 14 days"), ("expired", "Expired")]


@require_GET
@org_view(Perm.VIEW_ALL_CAMPAIGNS, requires_plan=True)
def exception_list(request):
    status = request.GET.get("status", "")
    error = ""
    try:
        items = exceptions_list(status=status)
    except ExceptionFilterError as exc:
        error, status = str(exc), ""
        items = exceptions_list()
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    today = timezone.localdate()
    for item in page.object_list:
        item.expiry_status = exception_status(item, today)
    return render(
        request,
        "campaigns/exception_list.html",
        {"page": page, "items": page.object_list, "status": status, "tabs": STATUS_TABS, "error": error},
        status=400 if error else 200,
    )


class ExceptionSerializer(serializers.ModelSerializer):
    item_id = serializers.IntegerField(source="id")
    identity = serializers.CharField(source="identity_email")
    identity_name = serializers.CharField()
    application = serializers.CharField(source="application_name")
    reason = serializers.CharField(source="decision_reason")
    decided_by = serializers.CharField(source="decided_by_email")
    expires_on = serializers.DateField(source="exception_expires_on")
    status = serializers.SerializerMethodField(help_text="active, expiring (within 14 days) or expired.")
    campaign_id = serializers.UUIDField(source="campaign.id")
    campaign = serializers.CharField(source="campaign.title")

    class Meta:
        model = ReviewItem
        fields = [
            "item_id", "identity", "identity_name", "application", "role", "reason", "decided_by", "decided_at",
            "expires_on", "status", "campaign_id", "campaign",
        ]  # fmt: skip

    def get_status(self, item) -> str:
        return exception_status(item, self.context.get("today"))


class ExceptionCursorPagination(IdCursorPagination):
    # Soonest expiry first; the id breaks ties so the cursor is stable.
    ordering = ("exception_expires_on", "id")


class ExceptionListAPI(OrgAPIView, generics.ListAPIView):
    """Exception decisions with their expiry, soonest first."""

    required_perms = {"GET": Perm.VIEW_ALL_CAMPAIGNS}
    requires_plan = True
    serializer_class = ExceptionSerializer
    pagination_class = ExceptionCursorPagination

    def get_queryset(self):
        try:
            return exceptions_list(status=self.request.query_params.get("status", ""))
        except ExceptionFilterError as exc:
            raise ValidationError({"status": [str(exc)]}) from exc

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "today": timezone.localdate()}

    @extend_schema(
        operation_id="exceptions_list",
        parameters=[
            OpenApiParameter(
                "status", OpenApiTypes.STR, enum=list(EXCEPTION_STATUSES),
                description="active (not expired), expiring (within 14 days) or expired; all when omitted.",
            )
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
