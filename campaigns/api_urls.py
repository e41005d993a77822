from django.urls import path

from . import api, delegation_api, exception_views, reassign_api, review_api

urlpatterns = [
    path("campaigns/", api.CampaignListAPI.as_view(), name="api_campaign_list"),
    path("campaigns/preview/", api.CampaignPreviewAPI.as_view(), name="api_campaign_preview"),
    path("campaigns/<uuid:campaign_id>/", api.CampaignDetailAPI.as_view(), name="api_campaign_detail"),
    path("campaigns/<uuid:campaign_id>/launch/", api.CampaignLaunchAPI.as_view(), name="api_campaign_launch"),
    path("campaigns/<uuid:campaign_id>/cancel/", api.CampaignCancelAPI.as_view(), name="api_campaign_cancel"),
    path("campaigns/<uuid:campaign_id>/close/", api.CampaignCloseAPI.as_view(), name="api_campaign_close"),
    path("campaigns/<uuid:campaign_id>/reassign/", api.CampaignReassignAPI.as_view(), name="api_campaign_reassign"),
    path("campaigns/<uuid:campaign_id>/progress/", api.CampaignProgressAPI.as_view(), name="api_campaign_progress"),
    path(
        "campaigns/<uuid:campaign_id>/decision-quality/",
        api.CampaignDecisionQualityAPI.as_view(),
        name="api_campaign_decision_quality",
    ),
    path(
        "campaigns/<uuid:campaign_id>/items/<int:item_id>/confirm-removed/",
        api.ItemConfirmRemovedAPI.as_view(),
        name="api_item_confirm_removed",
    ),
    path("campaigns/<uuid:campaign_id>/guests/", api.CampaignGuestListAPI.as_view(), name="api_campaign_guests"),
    path(
        "campaigns/<uuid:campaign_id>/guests/<int:guest_id>/revoke/",
        api.CampaignGuestRevokeAPI.as_view(),
        name="api_campaign_guest_revoke",
    ),
    path(
        "campaigns/<uuid:campaign_id>/guests/<int:guest_id>/resend/",
        api.CampaignGuestResendAPI.as_view(),
        name="api_campaign_guest_resend",
    ),
    path("me/delegates/", delegation_api.MyDelegatesAPI.as_view(), name="api_my_delegates"),
    path("me/delegates/<int:delegation_id>/", delegation_api.MyDelegateDetailAPI.as_view(), name="api_my_delegate"),
    path("my-reviews/", review_api.MyReviewsAPI.as_view(), name="api-my-reviews"),
    path("exceptions/", exception_views.ExceptionListAPI.as_view(), name="api_exception_list"),
    path("campaigns/<uuid:campaign_id>/items/", review_api.ItemListAPI.as_view(), name="api-review-items"),
    path(
        "campaigns/<uuid:campaign_id>/items/<int:item_id>/", review_api.ItemDetailAPI.as_view(), name="api-review-item"
    ),
    path(
        "campaigns/<uuid:campaign_id>/items/<int:item_id>/decision/",
        review_api.ItemDecisionAPI.as_view(),
        name="api-review-decision",
    ),
    path(
        "campaigns/<uuid:campaign_id>/bulk-decision/", review_api.BulkDecisionAPI.as_view(), name="api-review-bulk"
    ),
    path(
        "campaigns/<uuid:campaign_id>/items/<int:item_id>/reassign/",
        reassign_api.ItemReassignAPI.as_view(),
        name="api-review-item-reassign",
    ),
    path(
        "campaigns/<uuid:campaign_id>/items/reassign/",
        reassign_api.BulkReassignAPI.as_view(),
        name="api-review-items-reassign",
    ),
    path("campaigns/<uuid:campaign_id>/sign-off/", review_api.SignOffAPI.as_view(), name="api-review-sign-off"),
]
