from django.urls import path

from . import api

urlpatterns = [
    path("access-requests/<uuid:request_id>/ticket/open/", api.AccessRequestTicketApi.as_view(), {"action": "open"},
         name="api_access_request_ticket_open"),
    path("access-requests/<uuid:request_id>/ticket/retry/", api.AccessRequestTicketApi.as_view(),
         {"action": "retry"}, name="api_access_request_ticket_retry"),
    path("itsm-connections/", api.ConnectionListApi.as_view(), name="api_itsm_connections"),
    path("itsm-connections/<uuid:public_id>/", api.ConnectionDetailApi.as_view(), name="api_itsm_connection"),
    path(
        "itsm-connections/<uuid:public_id>/test/",
        api.ConnectionTestApi.as_view(),
        name="api_itsm_connection_test",
    ),
    path("remediation/", api.RemediationQueueApi.as_view(), name="api_remediation_queue"),
    path(
        "campaigns/<uuid:campaign_id>/tickets/", api.CampaignOpenTicketsApi.as_view(), name="api_campaign_open_tickets"
    ),
    path("itsm-tickets/<int:item_id>/retry/", api.TicketRetryApi.as_view(), name="api_itsm_ticket_retry"),
    path("itsm-tickets/<int:item_id>/comments/", api.TicketCommentsApi.as_view(), name="api_itsm_ticket_comments"),
    path(
        "itsm-tickets/<int:item_id>/comments/retry/",
        api.TicketCommentsRetryApi.as_view(),
        name="api_itsm_ticket_comments_retry",
    ),
]
