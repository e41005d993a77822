from django.urls import path

from . import api

urlpatterns = [
    path("me/", api.MeView.as_view(), name="api_me"),
    path("settings/", api.OrganizationSettingsView.as_view(), name="api_org_settings"),
    path("members/", api.MemberListView.as_view(), name="api_members"),
    path("members/invitations/", api.InvitationListView.as_view(), name="api_invitations"),
    path("members/invitations/<int:pk>/", api.InvitationDetailView.as_view(), name="api_invitation"),
    path("members/<int:pk>/", api.MemberDetailView.as_view(), name="api_member"),
    path("tokens/", api.TokenListView.as_view(), name="api_tokens"),
    path("tokens/<uuid:public_id>/", api.TokenDetailView.as_view(), name="api_token"),
    path("audit-events/", api.AuditEventListView.as_view(), name="api_audit_events"),
    path("operations/outbox/", api.OutboxView.as_view(), name="api_outbox"),
    path("operations/outbox/<int:event_id>/retry/", api.OutboxRetryView.as_view(), name="api_outbox_retry"),
]
