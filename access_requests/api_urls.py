from django.urls import path

from . import api

urlpatterns = [
    path("access-requests/", api.AccessRequestListAPI.as_view(), name="api_access_requests"),
    path("access-requests/like/", api.AccessLikeAPI.as_view(), name="api_access_request_like"),
    path("access-requests/batch/", api.AccessBatchAPI.as_view(), name="api_access_request_batch"),
    path("access-requests/policy/", api.ApprovalPolicyAPI.as_view(), name="api_access_request_policy"),
    path("access-requests/<uuid:request_id>/", api.AccessRequestDetailAPI.as_view(), name="api_access_request"),
    path("access-requests/<uuid:request_id>/decision/", api.AccessRequestDecisionAPI.as_view(),
         name="api_access_request_decision"),
    path("access-requests/<uuid:request_id>/cancel/", api.AccessRequestCancelAPI.as_view(),
         name="api_access_request_cancel"),
    path("access-requests/<uuid:request_id>/reassign/", api.AccessRequestReassignAPI.as_view(),
         name="api_access_request_reassign"),
]
