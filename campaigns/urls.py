from django.urls import path

from . import delegation_views, exception_views, reassign_views, review_views, views

urlpatterns = [
    path("campaigns/", views.campaign_list, name="campaign_list"),
    path("campaigns/new/", views.campaign_new, name="campaign_new"),
    path("campaigns/preview/", views.campaign_preview, name="campaign_preview"),
    path("campaigns/<uuid:campaign_id>/", views.campaign_detail, name="campaign_detail"),
    path("campaigns/<uuid:campaign_id>/edit/", views.campaign_edit, name="campaign_edit"),
    path("campaigns/<uuid:campaign_id>/launch/", views.campaign_launch, name="campaign_launch"),
    path("campaigns/<uuid:campaign_id>/launch/status/", views.campaign_launch_status, name="campaign_launch_status"),
    path("campaigns/<uuid:campaign_id>/cancel/", views.campaign_cancel, name="campaign_cancel"),
    path("campaigns/<uuid:campaign_id>/close/", views.campaign_close, name="campaign_close"),
    path("campaigns/<uuid:campaign_id>/reassign/", views.campaign_reassign, name="campaign_reassign"),
    path(
        "campaigns/<uuid:campaign_id>/guests/<int:guest_id>/<slug:action>/",
        views.campaign_guest_action,
        name="campaign_guest_action",
    ),
    path(
        "campaigns/<uuid:campaign_id>/items/<int:item_id>/confirm-removed/",
        views.item_confirm_removed,
        name="item_confirm_removed",
    ),
    path(
        "campaigns/<uuid:campaign_id>/decision-quality/",
        views.campaign_decision_quality,
        name="campaign_decision_quality",
    ),
    path("reviews/", review_views.my_reviews, name="my_reviews"),
    path("settings/my-delegation/", delegation_views.my_delegation, name="my_delegation"),
    path("settings/my-delegation/<int:delegation_id>/end/", delegation_views.my_delegation_end,
         name="my_delegation_end"),
    path("exceptions/", exception_views.exception_list, name="exception_list"),
    path("campaigns/<uuid:campaign_id>/items/", review_views.item_list, name="review_items"),
    path("campaigns/<uuid:campaign_id>/items/<int:item_id>/", review_views.item_detail, name="review_item_detail"),
    path(
        "campaigns/<uuid:campaign_id>/items/<int:item_id>/decide/", review_views.item_decide, name="review_item_decide"
    ),
    path("campaigns/<uuid:campaign_id>/items/bulk/", review_views.bulk_decide, name="review_bulk"),
    path("campaigns/<uuid:campaign_id>/items/reassign/", reassign_views.review_reassign, name="review_reassign"),
    path("campaigns/<uuid:campaign_id>/items/bulk/confirm/", review_views.bulk_confirm, name="review_bulk_confirm"),
    path("campaigns/<uuid:campaign_id>/sign-off/", review_views.sign_off, name="review_sign_off"),
    path("campaigns/<uuid:campaign_id>/my-progress/", review_views.progress, name="review_progress"),
]
