from django.urls import path

from . import views

urlpatterns = [
    path("access-requests/", views.request_list, name="access_request_list"),
    path("access-requests/like/", views.like_page, name="access_request_like"),
    path("access-requests/policy/", views.policy_page, name="access_request_policy"),
    path("access-requests/<uuid:request_id>/", views.request_detail, name="access_request_detail"),
    path("access-requests/<uuid:request_id>/decide/", views.request_decide, name="access_request_decide"),
    path("access-requests/<uuid:request_id>/cancel/", views.request_cancel, name="access_request_cancel"),
    path("access-requests/<uuid:request_id>/reassign/", views.request_reassign, name="access_request_reassign"),
]
