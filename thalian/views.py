from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from . import outbox, selectors, services
from .access import org_view, user_memberships
from .auth import password_refusal
from .forms import (
    AcceptInvitationForm,
    AuditFilterForm,
    DeleteOrganizationForm,
    InviteForm,
    OrganizationSettingsForm,
    RoleForm,
    ThrottledPasswordChangeForm,
    TokenCreateForm,
)
from .home import home_sections
from .models import ApiToken, Invitation, Membership, OutboxEvent
from .permissions import Perm, Role

PLATFORM_ACTIONS = [
    "login",
    "login_failed",
    "member_invited",
    "member_joined",
    "member_role_changed",
    "member_removed",
    "invitation_revoked",
    "token_created",
    "token_revoked",
    "plan_changed",
    "organization_settings_changed",
    "password_changed",
    "password_reset",
]


@login_required
def home(request):
    """Send people to the organization they picked or used last, or let them choose one."""
    memberships = user_memberships(request)
    wanted = request.GET.get("org", "")
    if wanted:
        # The organization switcher submits either a slug or the organization's dashboard address.
        for m in memberships:
            target = reverse("org_dashboard", args=[m.organization.slug])
            if wanted in (m.organization.slug, target) and url_has_allowed_host_and_scheme(target, None):
                return redirect(target)
        raise Http404("No such organization")
    last = request.session.get("last_org")
    for m in memberships:
        if m.organization.slug == last:
            return redirect("org_dashboard", org_slug=last)
    if len(memberships) == 1:
        return redirect("org_dashboard", org_slug=memberships[0].organization.slug)
    return render(request, "thalian/choose_org.html", {"memberships": memberships})


@org_view()
def dashboard(request):
    """Home: what this member should do next, from the sections the apps contribute (see thalian.home)."""
    return render(request, "thalian/dashboard.html", {"sections": home_sections(request)})


@require_GET
def healthz(request):
    """Database and broker reachability, for load balancers: 200 when both answer, 503 otherwise."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        checks["database"] = f"error: {exc.__class__.__name__}"
    if settings.REDIS_URL:
        try:
            import redis

            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
            checks["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["broker"] = f"error: {exc.__class__.__name__}"
    elif settings.EMBEDDED_BROKER:
        try:
            from thalian.celery import app

            with app.connection_for_write() as broker:
                broker.ensure_connection(max_retries=1)
            checks["broker"] = "ok (embedded SQLite broker)"
        except Exception as exc:  # noqa: BLE001
            checks["broker"] = f"error: {exc.__class__.__name__}"
    else:
        checks["broker"] = "ok (eager, in process)"
    healthy = all(v.startswith("ok") for v in checks.values())
    details = {}
    if checks["database"] == "ok":
        # A detail, not a health condition: a backlog means slow or failing receivers, which a load balancer
        # cannot fix by taking this instance out.
        details["outbox"] = outbox.outbox_backlog().as_dict()
    return JsonResponse(
        {"status": "ok" if healthy else "error", **checks, **details}, status=200 if healthy else 503
    )


def _error_text(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return " ".join(str(m) for msgs in exc.message_dict.values() for m in msgs)
    return " ".join(exc.messages)


# Members -------------------------------------------------------------------------------------------------


def _get_member(request, pk: int) -> Membership:
    """Access helper: a membership of the current organization, 404 for anything else."""
    return get_object_or_404(
        Membership.objects.select_related("user", "organization"), pk=pk, organization=request.organization
    )


def _members_page(request, *, invite_form=None, status=200):
    members = list(selectors.members_for_organization(organization=request.organization))
    actor_role = request.membership.role
    can_touch_super = request.membership.can(Perm.MANAGE_ORGANIZATION)
    rows = [
        {
            "m": m,
            "editable": m.role != Role.SUPER_ADMIN or can_touch_super,
            "form": RoleForm(initial={"role": m.role}, actor_role=actor_role, prefix=f"m{m.pk}"),
        }
        for m in members
    ]
    return render(
        request,
        "thalian/members.html",
        {
            "rows": rows,
            "invitations": selectors.open_invitations(organization=request.organization),
            "invite_form": invite_form or InviteForm(actor_role=actor_role),
        },
        status=status,
    )


@org_view(Perm.MANAGE_SETTINGS)
def member_list(request):
    return _members_page(request)


@require_POST
@org_view(Perm.MANAGE_SETTINGS)
def member_invite(request):
    form = InviteForm(request.POST, actor_role=request.membership.role)
    if form.is_valid():
        try:
            invitation, _raw = services.invitation_create(
                actor=request.membership, email=form.cleaned_data["email"], role=form.cleaned_data["role"],
                request=request,
            )
        except ValidationError as exc:
            form.add_error(None, _error_text(exc))
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            return redirect("member_list", org_slug=request.organization.slug)
    return _members_page(request, invite_form=form, status=400)


@require_POST
@org_view(Perm.MANAGE_SETTINGS)
def member_role(request, pk: int):
    member = _get_member(request, pk)
    form = RoleForm(request.POST, actor_role=request.membership.role, prefix=f"m{member.pk}")
    if not form.is_valid():
        messages.error(request, f"Role not changed: {_error_text(ValidationError(form.errors))}")
        return redirect("member_list", org_slug=request.organization.slug)
    try:
        services.membership_role_change(
            actor=request.membership, membership=member, role=form.cleaned_data["role"], request=request
        )
    except ValidationError as exc:
        messages.error(request, f"Role not changed: {_error_text(exc)}")
    else:
        messages.success(request, f"{member.user.email} is now {member.get_role_display()}.")
    return redirect("member_list", org_slug=request.organization.slug)


@require_POST
@org_view(Perm.MANAGE_SETTINGS)
def member_remove(request, pk: int):
    member = _get_member(request, pk)
    try:
        services.membership_remove(actor=request.membership, membership=member, request=request)
    except ValidationError as exc:
        messages.error(request, f"Not removed: {_error_text(exc)}")
    else:
        messages.success(request, f"{member.user.email} was removed from {request.organization.name}.")
        if member.pk == request.membership.pk:
            return redirect("home")
    return redirect("member_list", org_slug=request.organization.slug)


@require_POST
@org_view(Perm.MANAGE_SETTINGS)
def invitation_revoke(request, pk: int):
    invitation = get_object_or_404(Invitation.objects.all(), pk=pk)
    services.invitation_revoke(actor=request.membership, invitation=invitation, request=request)
    messages.success(request, f"The invitation of {invitation.email} was withdrawn.")
    return redirect("member_list", org_slug=request.organization.slug)


def invitation_accept(request, token: str):
    """Public page of an invitation link: join as the signed-in person, or create an account."""
    invitation = services.invitation_for_token(token)
    if invitation is None:
        raise Http404("No such invitation")
    context = {"invitation": invitation, "organization": invitation.organization}
    if not invitation.is_open:
        return render(request, "thalian/invitation_closed.html", context, status=410)
    from .models import User

    user = request.user if request.user.is_authenticated else None
    existing = User.objects.filter(email=invitation.email).exists()
    form = None
    if user is None and not existing:
        form = AcceptInvitationForm(request.POST or None, email=invitation.email)
    # Single sign-on enforced for this address: the account is made by signing in through the identity provider,
    # never with a password chosen here.
    refusal = password_refusal(invitation.email) if form is not None else None
    if refusal:
        form = None
    if request.method == "POST" and refusal:
        messages.error(request, refusal)
    elif request.method == "POST":
        if user is not None and user.email.lower() != invitation.email:
            messages.error(request, f"This invitation is for {invitation.email}; sign out first to accept it.")
        elif user is not None or (form is not None and form.is_valid()):
            try:
                membership = services.invitation_accept(
                    invitation=invitation,
                    user=user,
                    name=form.cleaned_data.get("name", "") if form else "",
                    password=form.cleaned_data["password1"] if form else None,
                    request=request,
                )
            except ValidationError as exc:
                messages.error(request, _error_text(exc))
            else:
                if user is None:
                    auth_login(request, membership.user, backend="thalian.auth.ThrottledEmailBackend")
                messages.success(request, f"Welcome to {membership.organization.name}.")
                return redirect("org_dashboard", org_slug=membership.organization.slug)
    context.update({"form": form, "existing": existing, "sso_refusal": refusal,
                    "login_url": f"{reverse('login')}?next={request.path}"})
    return render(request, "thalian/invitation_accept.html", context, status=400 if request.method == "POST" else 200)


# Organization settings -----------------------------------------------------------------------------------


@org_view(Perm.MANAGE_ORGANIZATION)
def org_settings(request):
    org = request.organization
    form = OrganizationSettingsForm(request.POST or None, instance=org)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            changes = form.service_changes()
            form.instance.refresh_from_db()  # the form mutated it; the service decides what changes
            try:
                services.organization_update(actor=request.membership, request=request, **changes)
            except ValidationError as exc:
                form.add_error(None, _error_text(exc))
                status = 400
            else:
                messages.success(request, "Organization settings saved.")
                return redirect("org_settings", org_slug=org.slug)
        else:
            status = 400
    return render(
        request, "thalian/org_settings.html", {"form": form, "delete_form": DeleteOrganizationForm()}, status=status
    )


@require_POST
@org_view(Perm.MANAGE_ORGANIZATION)
def org_delete(request):
    form = DeleteOrganizationForm(request.POST)
    name = request.organization.name
    if form.is_valid():
        try:
            services.organization_delete(
                actor=request.membership, confirm_slug=form.cleaned_data["confirm"], request=request
            )
        except ValidationError as exc:
            form.add_error("confirm", _error_text(exc))
        else:
            request.session.pop("last_org", None)
            messages.success(request, f"The organization {name} and all its data were deleted.")
            return redirect("home")
    return render(
        request,
        "thalian/org_settings.html",
        {"form": OrganizationSettingsForm(instance=request.organization), "delete_form": form},
        status=400,
    )


# API tokens ----------------------------------------------------------------------------------------------


@org_view()
def token_list(request):
    form = TokenCreateForm(request.POST or None)
    raw = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            _token, raw = services.apitoken_create(
                membership=request.membership, name=form.cleaned_data["name"], request=request
            )
            form = TokenCreateForm()
        else:
            status = 400
    tokens = selectors.tokens_for_membership(membership=request.membership)
    response = render(
        request, "thalian/tokens.html", {"form": form, "tokens": tokens, "new_token": raw}, status=status
    )
    if raw:
        response.headers["Cache-Control"] = "no-store"
    return response


@require_POST
@org_view()
def token_revoke(request, public_id):
    # Access helper: only the caller's own tokens in this organization; anything else is 404.
    token = get_object_or_404(ApiToken.objects.all(), public_id=public_id, membership=request.membership)
    services.apitoken_revoke(token=token, actor=request.user, request=request)
    messages.success(request, f"Token '{token.name}' revoked: it no longer works.")
    return redirect("token_list", org_slug=request.organization.slug)


# Audit log -----------------------------------------------------------------------------------------------


@org_view(Perm.VIEW_AUDIT_LOG)
def audit_log(request):
    actions = sorted(set(PLATFORM_ACTIONS) | set(selectors.audit_actions(organization=request.organization)))
    form = AuditFilterForm(request.GET or None)
    filters = selectors.AuditFilters()
    if form.is_bound and form.is_valid():
        filters = selectors.AuditFilters(**form.cleaned_data)
    after = request.GET.get("after") or None
    try:
        events, next_cursor = selectors.audit_page(organization=request.organization, filters=filters, after=after)
    except ValueError:
        after = None
        messages.error(request, "That page link is not valid; showing the newest events.")
        events, next_cursor = selectors.audit_page(organization=request.organization, filters=filters)
    query = request.GET.copy()
    query.pop("after", None)
    first_url = f"?{query.urlencode()}" if after else None
    next_url = None
    if next_cursor:
        query["after"] = next_cursor
        next_url = f"?{query.urlencode()}"
    status = 400 if form.is_bound and not form.is_valid() else 200
    return render(
        request,
        "thalian/audit_log.html",
        {"form": form, "events": events, "next_url": next_url, "first_url": first_url, "actions": actions},
        status=status,
    )


PASSWORD_RESET_MAILS_PER_HOUR = 3


def _audit_for_each_membership(user, *, action: str, request) -> None:
    """Account-level events are recorded in every organization the person belongs to."""
    from .audit import audit_record

    for organization_id in user.memberships.values_list("organization_id", flat=True):
        audit_record(action=action, organization_id=organization_id, actor=user, request=request)


class PasswordResetView(auth_views.PasswordResetView):
    """Reset links use SITE_URL, not the Host header of the request that asked for them. At most a few reset
    e-mails per address and hour, so the form cannot be used to flood someone's inbox; the answer looks the
    same either way, so it tells nothing about which addresses have accounts."""

    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"

    def form_valid(self, form):
        from django.core.cache import cache

        key = f"password-reset:{form.cleaned_data['email'].strip().lower()}"
        cache.add(key, 0, timeout=3600)
        if cache.incr(key) > PASSWORD_RESET_MAILS_PER_HOUR:
            return redirect(self.get_success_url())
        self.extra_email_context = {"site_url": settings.SITE_URL}
        return super().form_valid(form)


class PasswordChangeView(auth_views.PasswordChangeView):
    form_class = ThrottledPasswordChangeForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def form_valid(self, form):
        response = super().form_valid(form)
        _audit_for_each_membership(form.user, action="password_changed", request=self.request)
        return response


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    def form_valid(self, form):
        response = super().form_valid(form)
        _audit_for_each_membership(form.user, action="password_reset", request=self.request)
        return response


# Operations ----------------------------------------------------------------------------------------------


@require_GET
@org_view(Perm.MANAGE_ORGANIZATION)
def operations(request):
    """Hand-offs between areas of this organization: the backlog, and events whose receiver gave up."""
    return render(
        request,
        "thalian/operations.html",
        {
            "backlog": outbox.outbox_backlog(organization_id=request.organization.pk),
            "failed": outbox.outbox_failed(organization_id=request.organization.pk),
            "max_attempts": outbox.MAX_RECEIVER_ATTEMPTS,
        },
    )


@require_POST
@org_view(Perm.MANAGE_ORGANIZATION)
def operations_retry(request, event_id: int):
    try:
        row = outbox.outbox_event_retry(
            event_id=event_id, actor=request.user, organization_id=request.organization.pk, request=request
        )
    except OutboxEvent.DoesNotExist as exc:
        raise Http404("No such event") from exc
    except outbox.OutboxError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Event {row.pk} ({row.name}) will be handed to its receivers again.")
    return redirect("operations", org_slug=request.organization.slug)
