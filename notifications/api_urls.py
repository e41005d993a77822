from django.urls import path

from . import api

urlpatterns = [
    path("campaigns/<uuid:campaign_id>/remind/", api.CampaignRemindAPI.as_view(), name="api_campaign_remind"),
    path(
        "campaigns/<uuid:campaign_id>/remind-removal/",
        api.CampaignRemindRemovalAPI.as_view(),
        name="api_campaign_remind_removal",
    ),
    path(
        "campaigns/<uuid:campaign_id>/notification-policy/",
        api.CampaignPolicyAPI.as_view(),
        name="api_campaign_notification_policy",
    ),
    path(
        "campaigns/<uuid:campaign_id>/notifications/",
        api.CampaignNotificationsAPI.as_view(),
        name="api_campaign_notifications",
    ),
    path(
        "me/notification-preferences/",
        api.MyNotificationPreferencesAPI.as_view(),
        name="api_my_notification_preferences",
    ),
    path("notification-settings/", api.NotificationSettingsAPI.as_view(), name="api_notification_settings"),
    path("notifications/failed/", api.FailedNotificationsAPI.as_view(), name="api_notifications_failed"),
    path("notifications/retry/", api.NotificationRetryAPI.as_view(), name="api_notifications_retry"),
]
