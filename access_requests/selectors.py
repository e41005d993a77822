"""Reads of access requests: the lists behind the tabs, one request with its trail, and what the periodic
notices and the remediation queue need."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from entitlements.models import Entitlement, Identity
from thalian.models import Membership
from thalian.permissions import Perm, has_perm

from .models import AccessRequest, Approval, ApprovalDecision, RequestStatus, TrailEvent

TABS = [("mine", "My requests"), ("approve", "To approve"), ("all", "All requests")]


def may_see_all(member: Membership) -> bool:
    return has_perm(member.role, Perm.VIEW_ALL_ACCESS_REQUESTS)


def requests_list(*, member: Membership, tab: str = "mine", status: str = "") -> QuerySet[AccessRequest]:
    """``mine``: requested by the member or for their own access; ``approve``: waiting for them (or for the
    member they are the standing delegate of); ``all``: every request (staff and auditors)."""
    qs = AccessRequest.objects.select_related("identity", "application").prefetch_related(
        Prefetch("approvals", queryset=Approval.objects.only(
            "id", "access_request_id", "stage", "approver_email", "decision").order_by("stage")))
    if tab == "approve":
        qs = qs.filter(status=RequestStatus.PENDING).filter(
            pk__in=Approval.objects.filter(decision=ApprovalDecision.PENDING, approver__in=_represented(member))
            .values("access_request_id"))
    elif tab == "all":
        if not may_see_all(member):
            raise PermissionDenied(f"Your role ({member.role}) does not show every access request.")
    else:
        qs = qs.filter(Q(requested_by=member) | Q(identity__email__iexact=member.user.email))
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def _represented(member: Membership) -> list[int]:
    """The member and everyone whose standing delegation ends with them today."""
    from campaigns.delegation import delegate_final
    from campaigns.models import Delegation
    from campaigns.reassignment import ReassignError

    ids = [member.pk]
    today = timezone.localdate()
    for row in Delegation.objects.filter(starts_on__lte=today).exclude(ends_on__lt=today).select_related(
            "member__user", "member__organization"):
        try:
            if delegate_final(member=row.member, day=today).pk == member.pk:
                ids.append(row.member_id)
        except ReassignError:
            continue
    return ids


def request_for_member(*, member: Membership, request_id) -> AccessRequest:
    """One request the member may see, with its stages and trail; 404 otherwise (another organization's
    request, a malformed id or someone else's request alike)."""
    req = (AccessRequest.objects.select_related("identity__manager", "application", "requested_by__user")
           .prefetch_related(Prefetch("approvals", queryset=Approval.objects.select_related("approver__user")
                                      .order_by("stage")),
                             Prefetch("trail", queryset=TrailEvent.objects.order_by("at", "id")))
           .filter(pk=request_id).first())
    if req is None:
        raise Http404("No such access request.")
    if may_see_all(member):
        return req
    email = member.user.email.lower()
    represented = set(_represented(member))
    involved = (req.requested_by_id == member.pk or req.identity.email.lower() == email
                or any(a.approver_id in represented for a in req.approvals.all()))
    if not involved:
        raise Http404("No such access request.")
    return req


@dataclass
class ApprovalNotice:
    approval: Approval
    kind: str  # "reminder" or "escalation"
    day: int


def approvals_to_nudge(*, now: dt.datetime | None = None) -> list[ApprovalNotice]:
    """Pending stages due a reminder (every ``remind_every_days`` since assignment) or an escalation (once,
    ``escalate_after_days`` after assignment), by the request's application policy."""
    from .services import policy_for

    now = now or timezone.now()
    notices = []
    approvals = Approval.objects.filter(decision=ApprovalDecision.PENDING, access_request__status=RequestStatus.PENDING,
                                        assigned_at__isnull=False).exclude(approver_email="").select_related(
        "access_request__application", "access_request__identity", "access_request__organization", "approver__user")
    policies: dict = {}
    for approval in approvals:
        req = approval.access_request
        policy = policies.get(req.application_id)
        if policy is None:
            policy = policies[req.application_id] = policy_for(organization=req.organization,
                                                               application=req.application)
        days = (now - approval.assigned_at).days
        if days <= 0:
            continue
        if policy.escalate_after_days and days >= policy.escalate_after_days:
            notices.append(ApprovalNotice(approval, "escalation", policy.escalate_after_days))
        elif policy.remind_every_days and days % policy.remind_every_days == 0:
            notices.append(ApprovalNotice(approval, "reminder", days))
    return notices


ENDING_NOTICE_DAYS = (7, 1)


def temporary_access_ending(*, now: dt.datetime | None = None) -> list[tuple[AccessRequest, int]]:
    """(request, days) for temporary grants ending within 7 days or within 1 day: the identity and the
    application owner are told once per step."""
    now = now or timezone.now()
    rows = []
    for req in AccessRequest.objects.filter(
        ends_at__isnull=False, access_ended_at__isnull=True, ends_at__gt=now,
        ends_at__lte=now + dt.timedelta(days=max(ENDING_NOTICE_DAYS)),
        status__in=[RequestStatus.APPROVED, RequestStatus.FULFILLING, RequestStatus.FULFILLED],
    ).select_related("identity", "application"):
        left = req.ends_at - now
        rows.append((req, 1 if left <= dt.timedelta(days=1) else 7))
    return rows


def requests_waiting_for_ticket(*, member: Membership) -> QuerySet[AccessRequest]:
    """Approved changes with no ticket yet (no ticketing connection applied when they were approved, or the
    ended temporary access to remove): the application owner's share of the remediation queue; staff see all."""
    qs = AccessRequest.objects.filter(ticket_state="waiting").select_related("identity", "application")
    if not has_perm(member.role, Perm.CONFIRM_ANY_REMOVAL):
        email = member.user.email
        qs = qs.filter(Q(application__owner_email__iexact=email) | Q(application__remediation_owner_email__iexact=email))
    return qs.order_by("decided_at", "pk")


def requests_in_period(*, start: dt.datetime, end: dt.datetime) -> QuerySet[AccessRequest]:
    """Every request made in [start, end), with its stages and trail, for reports."""
    return (AccessRequest.objects.filter(created_at__gte=start, created_at__lt=end)
            .select_related("identity", "application")
            .prefetch_related(Prefetch("approvals", queryset=Approval.objects.order_by("stage")),
                              Prefetch("trail", queryset=TrailEvent.objects.order_by("at", "id")))
            .order_by("created_at", "pk"))


# "Like another person / job title / department" ---------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    type: str  # grant or revoke
    application: str
    role: str
    why: str


def access_like(*, target, like: dict, include_revokes: bool = False) -> list[Proposal]:
    """The difference between ``target``'s present access and a model's, from the current inventory: grants the
    model has that the target lacks (and, with ``include_revokes``, the target's access the model lacks, as
    revokes). The model is an identity (``{"identity": email}``) or everyone else with a job title or in a
    department (``{"title": ...}`` / ``{"department": ...}``), where a role counts when at least half of them
    hold it. ``LikeError`` names what is wrong with ``like``."""
    kinds = [k for k in ("identity", "title", "department") if (like or {}).get(k)]
    if len(kinds) != 1:
        raise LikeError("like: give exactly one of identity, title or department.")
    kind = kinds[0]
    value = str(like[kind]).strip()
    if kind == "identity":
        model = Identity.objects.filter(email__iexact=value).first()
        if model is None:
            raise LikeError(f"like: {value} is not in the inventory.")
        if model.pk == target.pk:
            raise LikeError("like: pick someone other than the person the access is for.")
        people = [model.pk]
        label = model.email
    else:
        people = list(Identity.objects.filter(**{f"{kind}__iexact": value}, status="active").exclude(pk=target.pk)
                      .values_list("pk", flat=True))
        if not people:
            raise LikeError(f"like: nobody else has the {'job title' if kind == 'title' else 'department'} {value}.")
        label = f"people with the job title {value}" if kind == "title" else f"people in {value}"
    held = Entitlement.objects.filter(present=True)
    mine = set(held.filter(identity=target).values_list("application__name", "role"))
    counts: dict[tuple[str, str], int] = {}
    for app, role, _identity in held.filter(identity_id__in=people).values_list(
            "application__name", "role", "identity_id").distinct():
        counts[(app, role)] = counts.get((app, role), 0) + 1
    total = len(people)
    theirs = {key for key, n in counts.items() if n * 2 >= total}
    proposals = [
        Proposal("grant", app, role, f"{label} holds it" if kind == "identity"
                 else f"held by {counts[(app, role)]} of {total} {label}")
        for app, role in sorted(theirs - mine, key=lambda k: (k[0].lower(), k[1].lower()))
    ]
    if include_revokes:
        anyone = set(counts)
        proposals += [
            Proposal("revoke", app, role, f"{label} does not hold it" if kind == "identity"
                     else f"none of the {total} {label} holds it")
            for app, role in sorted(mine - anyone, key=lambda k: (k[0].lower(), k[1].lower()))
        ]
    return proposals


class LikeError(ValueError):
    pass
