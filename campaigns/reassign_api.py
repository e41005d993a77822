"""Handing review items to another reviewer: one item, or a selection (ids or a filter) of the caller's items.
Reviewers move items assigned to them; admins move anyone's."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from thalian.api import OrgAPIView
from thalian.permissions import Perm

from . import review_selectors as sel
from .reassignment import ReassignError, review_items_reassign
from .review_api import ItemSelectionSerializer, _CampaignMixin, _drf_error


class ReassignInputSerializer(serializers.Serializer):
    to = serializers.EmailField(help_text="E-mail of the member who reviews the items from now on.")
    reason = serializers.CharField(max_length=1000, help_text="Why the items are handed over (kept in the "
                                   "item's history).")


class BulkReassignInputSerializer(ItemSelectionSerializer, ReassignInputSerializer):
    pass


REASSIGN_RESULT = inline_serializer(
    "ItemsReassignResult",
    {
        "reassigned": serializers.IntegerField(),
        "skipped_self_review": serializers.IntegerField(help_text="Items left out: their identity is the target."),
        "to": serializers.EmailField(),
    },
)


def _refused(exc: ReassignError):
    return serializers.ValidationError({exc.field: [exc.message]})


class ItemReassignAPI(_CampaignMixin, OrgAPIView):
    required_perms = {"POST": Perm.DECIDE_ASSIGNED}
    requires_plan = True

    @extend_schema(request=ReassignInputSerializer, responses=REASSIGN_RESULT, operation_id="campaign_item_reassign",
                   description="Hand one item to another member with a reason. Refused (400, saying why) when the "
                   "target is the item's identity, may not review, or the item is signed off.")
    def post(self, request, org_slug, campaign_id, item_id):
        campaign = self.campaign(request, campaign_id)
        item = sel.review_item_get(membership=request.membership, campaign=campaign, item_id=item_id)
        data = ReassignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        items = type(item).objects.filter(pk=item.pk)
        try:
            result = review_items_reassign(campaign=campaign, actor=request.membership, items=items, single=True,
                                           request=request, **data.validated_data)
        except ReassignError as exc:
            raise _refused(exc) from exc
        return Response({"reassigned": result.moved, "skipped_self_review": result.skipped_self_review,
                         "to": data.validated_data["to"].lower()})


class BulkReassignAPI(_CampaignMixin, OrgAPIView):
    required_perms = {"POST": Perm.DECIDE_ASSIGNED}
    requires_plan = True

    @extend_schema(request=BulkReassignInputSerializer, responses=REASSIGN_RESULT,
                   operation_id="campaign_items_reassign",
                   description="Hand a selection of items (item_ids, or every item matching filter) to another "
                   "member with a reason. Items whose identity is the target stay where they are.")
    def post(self, request, org_slug, campaign_id):
        campaign = self.campaign(request, campaign_id)
        data = BulkReassignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        membership = request.membership
        try:
            if "filter" in values:
                items = sel.review_items_matching(campaign=campaign, membership=membership, flt=values["filter"])
            else:
                items = sel.review_items_selected(campaign=campaign, membership=membership,
                                                  item_ids=values["item_ids"])
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        try:
            result = review_items_reassign(campaign=campaign, actor=membership, items=items, to=values["to"],
                                           reason=values["reason"], request=request)
        except ReassignError as exc:
            raise _refused(exc) from exc
        return Response({"reassigned": result.moved, "skipped_self_review": result.skipped_self_review,
                         "to": values["to"].lower()})
