from django.urls import path

from . import views

urlpatterns = [
    path("settings/itsm/", views.connections, name="itsm_connections"),
    path("settings/itsm/<uuid:public_id>/", views.connection_edit, name="itsm_connection_edit"),
    path("settings/itsm/<uuid:public_id>/test/", views.connection_test, name="itsm_connection_test"),
    path("settings/itsm/<uuid:public_id>/delete/", views.connection_delete, name="itsm_connection_delete"),
    path("remediation/", views.remediation_queue, name="remediation_queue"),
    path("remediation/tickets/<int:ticket_id>/retry/", views.ticket_retry, name="itsm_ticket_retry"),
    path("remediation/access-requests/<uuid:request_id>/open-ticket/", views.access_request_open_ticket,
         name="access_request_open_ticket"),
    path("remediation/request-tickets/<int:ticket_id>/retry/", views.access_request_ticket_retry,
         name="access_request_ticket_retry"),
    path(
        "remediation/tickets/<int:ticket_id>/comments/retry/",
        views.ticket_comments_retry,
        name="itsm_ticket_comments_retry",
    ),
    path(
        "campaigns/<uuid:campaign_id>/remediation/", views.campaign_remediation, name="campaign_remediation"
    ),
    path(
        "campaigns/<uuid:campaign_id>/remediation/open-tickets/",
        views.campaign_open_tickets,
        name="campaign_open_tickets",
    ),
    path(
        "campaigns/<uuid:campaign_id>/remediation/retry-failed/",
        views.campaign_retry_failed,
        name="campaign_retry_failed",
    ),
]
