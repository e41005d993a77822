"""Access request pages: the list with its tabs and request form, one request with its stages and trail, the
approval policy, and the guest approver's page (reached only with the personal link)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from campaigns.guests import GuestLinkError
from entitlements.models import Application
from thalian.access import org_view
from thalian.permissions import Perm, has_perm
from thalian.tenancy import scope

from . import selectors, services
from .forms import STATUS_FILTER, DecisionForm, LikeForm, PolicyForm, ReassignForm, RequestForm
from .guests import approval_resolve
from .models import ApprovalPolicy, RequestStatus

PAGE_SIZE = 50


def _service_error(form, exc: services.AccessRequestError) -> None:
    """The one place a service error lands on a page form: on its field when the form has it."""
    field = exc.field if exc.field in form.fields else None
    form.add_error(field, exc.message.removeprefix(f"{field}: ") if field else exc.message)


def _application_names() -> list[str]:
    return list(Application.objects.order_by("name").values_list("name", flat=True)[:1000])


@require_http_methods(["GET", "POST"])
@org_view(Perm.REQUEST_ACCESS)
def request_list(request):
    member = request.membership
    tabs = [(v, label) for v, label in selectors.TABS if v != "all" or selectors.may_see_all(member)]
    tab = request.GET.get("tab") or "mine"
    if tab not in dict(tabs):
        if tab == "all":
            raise PermissionDenied(f"Your role ({member.role}) does not show every access request.")
        tab = "mine"
    status = request.GET.get("status", "")
    if status and status not in RequestStatus.values:
        status = ""
    form = RequestForm(request.POST or None, applications=_application_names())
    code = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                req = services.access_request_create(
                    actor=member, type=data["type"], identity=data["identity"] or None,
                    application=data["application"], role=data["role"], reason=data["reason"],
                    ends_at=data["ends_at"], request=request)
            except services.AccessRequestError as exc:
                _service_error(form, exc)
            else:
                messages.success(request, "Request submitted: its approvers are told.")
                return redirect("access_request_detail", request.organization.slug, req.pk)
        code = 400
    page = Paginator(selectors.requests_list(member=member, tab=tab, status=status), PAGE_SIZE).get_page(
        request.GET.get("page"))
    return render(request, "access_requests/list.html", {
        "tabs": tabs, "tab": tab, "status": status, "statuses": STATUS_FILTER, "page": page,
        "requests": page.object_list, "form": form,
    }, status=code)


def _detail_context(request, req, **extra) -> dict:
    member = request.membership
    approval = services.current_approval(req)
    can_decide = services.may_decide(approval=approval, actor=member) and member.user.email.lower() not in (
        req.identity.email.lower(), req.requested_by_email.lower())
    return {
        "req": req, "approvals": list(req.approvals.all()), "trail": list(req.trail.all()),
        "current": approval, "can_decide": can_decide,
        "can_cancel": req.status == RequestStatus.PENDING and req.requested_by_id == member.pk,
        "can_reassign": req.status == RequestStatus.PENDING and has_perm(member.role, Perm.MANAGE_SETTINGS),
        "decision_form": extra.pop("decision_form", None) or DecisionForm(),
        "reassign_form": extra.pop("reassign_form", None) or ReassignForm(), **extra,
    }


@require_http_methods(["GET"])
@org_view(Perm.REQUEST_ACCESS)
def request_detail(request, request_id):
    req = selectors.request_for_member(member=request.membership, request_id=request_id)
    return render(request, "access_requests/detail.html", _detail_context(request, req))


def _detail_form_post(request, request_id, form_class, context_key: str, act, done: str):
    """A form posted from a request's page: the service call, then back to the page, or the page again with the
    form's errors (400)."""
    req = selectors.request_for_member(member=request.membership, request_id=request_id)
    form = form_class(request.POST)
    if form.is_valid():
        try:
            act(req, form.cleaned_data)
        except services.AccessRequestError as exc:
            _service_error(form, exc)
        else:
            messages.success(request, done)
            return redirect("access_request_detail", request.organization.slug, req.pk)
    req = selectors.request_for_member(member=request.membership, request_id=request_id)
    return render(request, "access_requests/detail.html", _detail_context(request, req, **{context_key: form}),
                  status=400)


@require_POST
@org_view(Perm.REQUEST_ACCESS)
def request_decide(request, request_id):
    return _detail_form_post(request, request_id, DecisionForm, "decision_form", lambda req, data: (
        services.access_request_decide(req=req, actor=request.membership, decision=data["decision"],
                                       reason=data["reason"], request=request)), "Decision recorded.")


@require_POST
@org_view(Perm.REQUEST_ACCESS)
def request_cancel(request, request_id):
    req = selectors.request_for_member(member=request.membership, request_id=request_id)
    try:
        services.access_request_cancel(req=req, actor=request.membership, request=request)
    except services.AccessRequestError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Request cancelled.")
    return redirect("access_request_detail", request.organization.slug, req.pk)


@require_POST
@org_view(Perm.MANAGE_SETTINGS)
def request_reassign(request, request_id):
    return _detail_form_post(request, request_id, ReassignForm, "reassign_form", lambda req, data: (
        services.approval_reassign(req=req, actor=request.membership, to=data["to"], reason=data["reason"],
                                   request=request)), "Approval reassigned.")


def _policy_initial(policy: ApprovalPolicy) -> dict:
    initial = {"fallback": policy.fallback.user.email if policy.fallback_id else "",
               "remind_every_days": policy.remind_every_days, "escalate_after_days": policy.escalate_after_days,
               "expire_after_days": policy.expire_after_days,
               "application": policy.application.name if policy.application_id else ""}
    for n, stage in enumerate(policy.stages[:3], start=1):
        initial[f"stage_{n}"] = stage["kind"]
        initial[f"stage_{n}_members"] = ", ".join(stage.get("members", []))
    return initial


@require_http_methods(["GET", "POST"])
@org_view(Perm.MANAGE_SETTINGS)
def policy_page(request):
    organization = request.organization
    default = services.policy_for(organization=organization, application=None)
    form = PolicyForm(request.POST or None, initial=_policy_initial(default))
    code = 200
    if request.method == "POST":
        if request.POST.get("delete"):
            app = Application.objects.filter(name__iexact=request.POST["delete"]).first()
            if app is None:
                raise Http404("No such application.")
            services.policy_delete(organization=organization, actor=request.membership, application=app,
                                   request=request)
            messages.success(request, f"{app.name} follows the organization's policy again.")
            return redirect("access_request_policy", organization.slug)
        if form.is_valid():
            name = form.cleaned_data["application"].strip()
            app = Application.objects.filter(name__iexact=name).first() if name else None
            if name and app is None:
                form.add_error("application", f"{name} is not an application in the inventory.")
            else:
                try:
                    services.policy_update(organization=organization, actor=request.membership, application=app,
                                           changes=form.changes(), request=request)
                except services.AccessRequestError as exc:
                    _service_error(form, exc)
                else:
                    messages.success(request, f"Approval policy of {app.name if app else 'the organization'} saved.")
                    return redirect("access_request_policy", organization.slug)
        code = 400
    overrides = ApprovalPolicy.objects.filter(application__isnull=False).select_related(
        "application", "fallback__user").order_by("application__name")
    return render(request, "access_requests/policy.html", {
        "form": form, "default": default, "overrides": overrides,
    }, status=code)


@require_http_methods(["GET", "POST"])
@org_view(Perm.REQUEST_ACCESS)
def like_page(request):
    """Pick a model (a person, a job title or a department), see the difference as lines, keep the ones wanted
    and submit them with one reason."""
    member = request.membership
    form = LikeForm(request.GET if "like_value" in request.GET else None)
    lines, target, errors, code = [], None, [], 200
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            target = services.like_target(actor=member, identity=data["identity"] or None)
            lines = selectors.access_like(target=target, like={data["like_kind"]: data["like_value"]},
                                          include_revokes=data["include_revokes"])
        except services.AccessRequestError as exc:
            _service_error(form, exc)
            code = 400
        except selectors.LikeError as exc:
            form.add_error("like_value", str(exc).removeprefix("like: "))
            code = 400
    elif form.is_bound:
        code = 400
    if request.method == "POST":
        kept = []
        for raw in request.POST.getlist("lines"):
            try:
                kept.append(json.loads(raw))
            except ValueError:
                continue
        try:
            created = services.access_requests_create_many(
                actor=member, identity=request.POST.get("identity") or None, reason=request.POST.get("reason", ""),
                ends_at=request.POST.get("ends_at") or None, lines=kept, request=request)
        except services.AccessRequestError as exc:
            errors.append(exc.message)
            code = 400
        else:
            messages.success(request, f"{len(created)} request{'s' if len(created) != 1 else ''} submitted.")
            return redirect("access_request_list", request.organization.slug)
    return render(request, "access_requests/like.html", {
        "form": form, "lines": [{**line.__dict__, "value": json.dumps(
            {"type": line.type, "application": line.application, "role": line.role})} for line in lines],
        "target": target, "errors": errors, "reason": request.POST.get("reason", ""),
    }, status=code)


# The guest approver's page -------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def guest_decide(request, token: str):
    try:
        approval = approval_resolve(token=token, request=request)
    except GuestLinkError as exc:
        return render(request, "campaigns/guest_link_error.html", {"message": exc.message}, status=exc.status)
    with scope(organization_id=approval.organization_id):
        req = approval.access_request
        form = DecisionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.access_request_decide(req=req, actor=None, guest_approval=approval,
                                               decision=form.cleaned_data["decision"],
                                               reason=form.cleaned_data["reason"], request=request)
            except services.AccessRequestError as exc:
                _service_error(form, exc)
            except PermissionDenied as exc:
                return render(request, "campaigns/guest_link_error.html", {"message": str(exc)}, status=403)
            else:
                return render(request, "access_requests/guest_done.html", {"req": req, "approval": approval,
                                                                           "decision": form.cleaned_data["decision"]})
        return render(request, "access_requests/guest.html", {
            "req": req, "approval": approval, "form": form, "token": token, "organization": req.organization,
        }, status=400 if request.method == "POST" else 200)

