from django.urls import path

from . import views

urlpatterns = [
    path("settings/notifications/", views.notification_settings, name="notification_settings"),
    path("settings/notifications/test/<str:channel>/", views.notification_test, name="notification_test"),
    path("settings/notifications/retry/", views.notification_retry, name="notification_retry"),
    path("settings/my-notifications/", views.notification_preferences, name="notification_preferences"),
    path("campaigns/<uuid:campaign_id>/remind/", views.campaign_remind, name="campaign_remind"),
    path(
        "campaigns/<uuid:campaign_id>/remind-removal/", views.campaign_remind_removal, name="campaign_remind_removal"
    ),
    path("campaigns/<uuid:campaign_id>/delete/", views.campaign_delete, name="campaign_delete"),
    path(
        "campaigns/<uuid:campaign_id>/notifications/",
        views.campaign_notifications,
        name="campaign_notifications",
    ),
]
