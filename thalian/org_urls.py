from django.urls import path

from . import views

urlpatterns = [
    path("members/", views.member_list, name="member_list"),
    path("members/invite/", views.member_invite, name="member_invite"),
    path("members/<int:pk>/role/", views.member_role, name="member_role"),
    path("members/<int:pk>/remove/", views.member_remove, name="member_remove"),
    path("members/invitations/<int:pk>/revoke/", views.invitation_revoke, name="invitation_revoke"),
    path("settings/organization/", views.org_settings, name="org_settings"),
    path("settings/organization/delete/", views.org_delete, name="org_delete"),
    path("settings/tokens/", views.token_list, name="token_list"),
    path("settings/tokens/<uuid:public_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("audit/", views.audit_log, name="audit_log"),
    path("settings/operations/", views.operations, name="operations"),
    path("settings/operations/events/<int:event_id>/retry/", views.operations_retry, name="operations_retry"),
]
