"""Access requests: submit, approve in stages, cancel, reassign, expire, verify against the inventory, and end
temporary access. Every change writes the request's trail and the audit log; work for other areas (tickets,
notices) is announced with domain events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.delegation import delegate_final
from campaigns.models import ReviewerStrategy
from campaigns.reassignment import ReassignError
from campaigns.reviewers import reviewer_resolve
from campaigns.selectors import REVIEWER_ROLES, membership_by_email
from entitlements.models import Application, Entitlement, Identity
from thalian.audit import audit_record
from thalian.events import (
    AccessApprovalRequested,
    AccessRequestDecided,
    AccessRequestVerified,
    TemporaryAccessEnded,
    publish,
)
from thalian.models import Membership, Organization
from thalian.permissions import Perm, Role, has_perm
from thalian.tenancy import assert_same_organization, scope
from thalian.text import single_line

from .models import (
    AWAITING_VERIFICATION,
    OPEN_STATUSES,
    AccessRequest,
    Approval,
    ApprovalDecision,
    ApprovalPolicy,
    RequestStatus,
    RequestType,
    StageKind,
    TrailEvent,
    default_stages,
)

MAX_STAGES = 5
# Roles that may request access for anyone when the organization allows requests for others.
REQUEST_FOR_ANYONE_ROLES = {Role.SUPER_ADMIN, Role.ADMIN, Role.SECURITY_ANALYST}
STRATEGY_OF_STAGE = {
    StageKind.MANAGER: ReviewerStrategy.MANAGER,
    StageKind.APPLICATION_OWNER: ReviewerStrategy.APPLICATION_OWNER,
    StageKind.MEMBERS: ReviewerStrategy.MEMBERS,
}


class AccessRequestError(ValueError):
    """Bad input or a step the request's state does not allow; ``field`` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def trail_add(req: AccessRequest, *, action: str, actor_email: str, message: str, details: dict | None = None,
              at: dt.datetime | None = None) -> TrailEvent:
    return TrailEvent.objects.create(
        organization_id=req.organization_id, access_request=req, action=action, actor_email=actor_email or "system",
        message=message[:1000], details=details or {}, at=at or timezone.now(),
    )


def _audit(req: AccessRequest, action: str, *, actor=None, request=None, details: dict | None = None,
           actor_email: str = "") -> None:
    audit_record(
        action=f"access_request.{action}", organization_id=req.organization_id, actor=getattr(actor, "user", None),
        request=request, target_type="access_request", target_id=str(req.pk),
        target_label=f"{req.get_type_display()} {req.role} in {req.application.name} for {req.identity.email}",
        details=details or {}, system=actor is None and request is None and not actor_email, actor_email=actor_email,
    )


# Policies ------------------------------------------------------------------------------------------------


def policy_for(*, organization: Organization, application: Application | None) -> ApprovalPolicy:
    """The application's override, else the organization's policy, else the default (manager, then owner)."""
    policies = ApprovalPolicy.objects.filter(organization=organization).select_related("fallback__user")
    if application is not None:
        own = policies.filter(application=application).first()
        if own is not None:
            return own
    return policies.filter(application__isnull=True).first() or ApprovalPolicy(
        organization=organization, stages=default_stages())


def stages_clean(*, organization: Organization, stages) -> list[dict]:
    if not isinstance(stages, list) or not stages:
        raise AccessRequestError("stages: give at least one approval stage.", field="stages")
    if len(stages) > MAX_STAGES:
        raise AccessRequestError(f"stages: at most {MAX_STAGES} stages.", field="stages")
    clean = []
    for n, stage in enumerate(stages, start=1):
        if isinstance(stage, str):
            stage = {"kind": stage}
        kind = stage.get("kind") if isinstance(stage, dict) else None
        if kind not in StageKind.values:
            raise AccessRequestError(f"stages: stage {n} has the unknown kind {kind!r}; choose from "
                                     f"{', '.join(StageKind.values)}.", field="stages")
        row: dict = {"kind": kind}
        if kind == StageKind.MEMBERS:
            emails = stage.get("members") or []
            if isinstance(emails, str):
                emails = [e for e in emails.replace(",", " ").split() if e]
            if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
                raise AccessRequestError(f"stages: the members of stage {n} must be a list of e-mails.",
                                         field="stages")
            if not emails:
                raise AccessRequestError(f"stages: stage {n} names no members.", field="stages")
            row["members"] = []
            for email in emails:
                member = membership_by_email(organization=organization, email=str(email))
                if member is None or member.role not in REVIEWER_ROLES:
                    raise AccessRequestError(f"stages: {email} is not a member who may approve (stage {n}).",
                                             field="stages")
                row["members"].append(member.user.email)
        clean.append(row)
    return clean


def _day_count(value, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AccessRequestError(f"{field} must be a whole number from {low} to {high}.", field=field)
    return value


@transaction.atomic
def policy_update(*, organization: Organization, actor: Membership, application: Application | None,
                  changes: dict, request=None) -> ApprovalPolicy:
    """Create or change the organization's policy (``application`` None) or an application's override."""
    assert_same_organization(actor, application)
    if actor.organization_id != organization.pk:
        raise PermissionDenied("Approval policies are changed by members of the organization.")
    if not has_perm(actor.role, Perm.MANAGE_SETTINGS):
        raise PermissionDenied(f"Your role ({actor.role}) does not allow changing approval policies.")
    policy = ApprovalPolicy.objects.filter(organization=organization, application=application).first()
    if policy is None:
        base = policy_for(organization=organization, application=None)
        policy = ApprovalPolicy(organization=organization, application=application, stages=base.stages,
                                fallback=base.fallback, remind_every_days=base.remind_every_days,
                                escalate_after_days=base.escalate_after_days, expire_after_days=base.expire_after_days)
    unknown = set(changes) - {"stages", "fallback", "remind_every_days", "escalate_after_days", "expire_after_days"}
    if unknown:
        raise AccessRequestError(f"{sorted(unknown)[0]}: unknown setting.", field=sorted(unknown)[0])
    if "stages" in changes:
        policy.stages = stages_clean(organization=organization, stages=changes["stages"])
    if "fallback" in changes:
        email = (changes["fallback"] or "").strip().lower()
        if email:
            member = membership_by_email(organization=organization, email=email)
            if member is None or member.role not in REVIEWER_ROLES:
                raise AccessRequestError(f"fallback: {email} is not a member who may approve.", field="fallback")
            policy.fallback = member
        else:
            policy.fallback = None
    for field, low in (("remind_every_days", 0), ("escalate_after_days", 0), ("expire_after_days", 1)):
        if field in changes:
            setattr(policy, field, _day_count(changes[field], field, low, 365))
    policy.updated_at = timezone.now()
    policy.save()
    audit_record(action="access_request.policy_updated", organization=organization, actor=actor.user,
                 request=request, target_type="approval_policy", target_id=str(policy.pk),
                 target_label=application.name if application else "organization",
                 details={"stages": policy.stages, "fallback": policy.fallback.user.email if policy.fallback else None,
                          "remind_every_days": policy.remind_every_days,
                          "escalate_after_days": policy.escalate_after_days,
                          "expire_after_days": policy.expire_after_days})
    return policy


@transaction.atomic
def policy_delete(*, organization: Organization, actor: Membership, application: Application, request=None) -> None:
    """An application's override goes; its requests follow the organization's policy again."""
    if not has_perm(actor.role, Perm.MANAGE_SETTINGS):
        raise PermissionDenied(f"Your role ({actor.role}) does not allow changing approval policies.")
    deleted, _ = ApprovalPolicy.objects.filter(organization=organization, application=application).delete()
    if deleted:
        audit_record(action="access_request.policy_deleted", organization=organization, actor=actor.user,
                     request=request, target_type="approval_policy", target_label=application.name)


# Submitting ------------------------------------------------------------------------------------------------


def _parse_ends_at(value) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = parse_datetime(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None:
            raise AccessRequestError(f"ends_at: {value!r} is not an ISO date and time.", field="ends_at")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


def may_request_for(*, actor: Membership, identity: Identity) -> bool:
    if identity.email.lower() == actor.user.email.lower():
        return True
    if not actor.organization.access_requests_for_others:
        return False
    if actor.role in REQUEST_FOR_ANYONE_ROLES:
        return True
    manager = identity.manager
    return manager is not None and manager.email.lower() == actor.user.email.lower()


@transaction.atomic
def access_request_create(*, actor: Membership, type: str, application: str, role: str, reason: str,
                          identity: str | None = None, ends_at=None, request=None) -> AccessRequest:
    organization = actor.organization
    if type not in RequestType.values:
        raise AccessRequestError(f"type: choose grant or revoke, not {type!r}.", field="type")
    email = (identity or actor.user.email).strip().lower()
    target = Identity.objects.filter(email=email).select_related("manager").first()
    if target is None:
        if identity:
            raise AccessRequestError(f"identity: {email} is not in the inventory.", field="identity")
        raise AccessRequestError(f"identity: you ({email}) are not in the inventory; an admin imports identities "
                                 "first.", field="identity")
    if not may_request_for(actor=actor, identity=target):
        if not organization.access_requests_for_others:
            raise PermissionDenied("This organization allows requests for yourself only.")
        raise PermissionDenied(f"You may request access for yourself or your reports, not for {email}.")
    app_name = single_line(application)
    app = Application.objects.filter(name__iexact=app_name).first() if app_name else None
    if app is None:
        raise AccessRequestError(f"application: {app_name or '(empty)'} is not an application in the inventory.",
                                 field="application")
    role = single_line(role)
    if not role:
        raise AccessRequestError("role: say which role or entitlement.", field="role")
    if len(role) > 255:
        raise AccessRequestError("role: longer than 255 characters.", field="role")
    reason = (reason or "").strip()
    if not reason:
        raise AccessRequestError("reason: say why the access is needed.", field="reason")
    held = Entitlement.objects.filter(identity=target, application=app, role__iexact=role, present=True).exists()
    if type == RequestType.GRANT and held:
        raise AccessRequestError(f"role: {email} already holds {role} in {app.name}.", field="role")
    if type == RequestType.REVOKE and not held:
        raise AccessRequestError(f"role: {email} does not hold {role} in {app.name}, so there is nothing to revoke.",
                                 field="role")
    ends = _parse_ends_at(ends_at)
    now = timezone.now()
    if ends is not None:
        if type == RequestType.REVOKE:
            raise AccessRequestError("ends_at: only a grant can be temporary.", field="ends_at")
        if ends <= now:
            raise AccessRequestError(f"ends_at: {ends.isoformat()} is in the past.", field="ends_at")
        longest = organization.access_request_max_days
        if ends > now + dt.timedelta(days=longest):
            raise AccessRequestError(f"ends_at: temporary access may last at most {longest} days in this "
                                     "organization.", field="ends_at")
    duplicate = AccessRequest.objects.filter(identity=target, application=app, role__iexact=role, type=type,
                                             status__in=OPEN_STATUSES).first()
    if duplicate is not None:
        raise AccessRequestError(f"role: request {duplicate.short_id} for the same access is already "
                                 f"{duplicate.get_status_display().lower()}.", field="role")
    policy = policy_for(organization=organization, application=app)
    req = AccessRequest.objects.create(
        organization=organization, type=type, identity=target, application=app, role=role, reason=reason,
        ends_at=ends, requested_by=actor, requested_by_email=actor.user.email, stages=policy.stages,
        approval_deadline=now + dt.timedelta(days=policy.expire_after_days), created_at=now,
    )
    Approval.objects.bulk_create([
        Approval(organization=organization, access_request=req, stage=n, kind=stage["kind"])
        for n, stage in enumerate(policy.stages)
    ])
    what = f"{req.get_type_display()} {role} in {app.name} for {email}"
    trail_add(req, action="created", actor_email=actor.user.email,
              message=f"Requested: {what}" + (f" until {ends:%Y-%m-%d %H:%M %Z}" if ends else "") + f". Reason: {reason}",
              details={"type": type, "role": role, "application": app.name, "identity": email,
                       "ends_at": ends.isoformat() if ends else None, "reason": reason})
    _audit(req, "created", actor=actor, request=request,
           details={"type": type, "identity": email, "application": app.name, "role": role,
                    "ends_at": ends.isoformat() if ends else None})
    _stage_start(req, policy=policy)
    return req


def like_target(*, actor: Membership, identity: str | None) -> Identity:
    """Whom a "like another person" preview is for (default: the actor), if the actor may request for them."""
    email = (identity or actor.user.email).strip().lower()
    target = Identity.objects.filter(email=email).select_related("manager").first()
    if target is None:
        raise AccessRequestError(f"identity: {email} is not in the inventory.", field="identity")
    if not may_request_for(actor=actor, identity=target):
        raise PermissionDenied(f"You may request access for yourself or your reports, not for {email}.")
    return target


@transaction.atomic
def access_requests_create_many(*, actor: Membership, lines: list[dict], reason: str, identity: str | None = None,
                                ends_at=None, request=None) -> list[AccessRequest]:
    """The lines a requester kept from a "like another person" preview, submitted together: all or nothing, and
    an error names the line. ``ends_at`` applies to the grants."""
    if not isinstance(lines, list) or not lines:
        raise AccessRequestError("lines: keep at least one line of the preview.", field="lines")
    created = []
    for n, line in enumerate(lines, start=1):
        if not isinstance(line, dict):
            raise AccessRequestError(f"lines: line {n} is not an object.", field="lines")
        kind = line.get("type", "")
        try:
            created.append(access_request_create(
                actor=actor, type=kind, identity=identity, application=line.get("application", ""),
                role=line.get("role", ""), reason=reason, ends_at=ends_at if kind == RequestType.GRANT else None,
                request=request))
        except AccessRequestError as exc:
            what = f"{kind} {line.get('role', '')} in {line.get('application', '')}".strip()
            raise AccessRequestError(f"lines: line {n} ({what}): {exc.message}", field="lines") from None
    return created


def _excluded_emails(req: AccessRequest) -> set[str]:
    """Nobody approves their own request or their own access, and each stage has a different approver."""
    earlier = Approval.objects.filter(access_request=req, decision=ApprovalDecision.APPROVED).values_list(
        "decided_by_email", "approver_email")
    return {req.requested_by_email.lower(), *(e.lower() for pair in earlier for e in pair if e)}


def _stage_start(req: AccessRequest, *, policy: ApprovalPolicy | None = None) -> Approval:
    approval = Approval.objects.get(access_request=req, stage=req.current_stage)
    policy = policy or policy_for(organization=req.organization, application=req.application)
    stage = req.stages[req.current_stage]
    resolved = reviewer_resolve(
        organization=req.organization, strategy=STRATEGY_OF_STAGE[StageKind(stage["kind"])], identity=req.identity,
        application=req.application, named=stage.get("members"), fallback=policy.fallback,
        excluded=_excluded_emails(req),
    )
    approval.approver = resolved.member
    approval.approver_email = resolved.email
    approval.note = resolved.note[:300]
    approval.decision = ApprovalDecision.PENDING
    approval.assigned_at = timezone.now()
    approval.save(update_fields=["approver", "approver_email", "note", "decision", "assigned_at"])
    label = f"Stage {approval.stage + 1} ({StageKind(approval.kind).label.lower()})"
    if resolved.is_unassigned:
        trail_add(req, action="stage_unassigned", actor_email="system",
                  message=f"{label}: nobody may approve it. {resolved.note}")
    else:
        trail_add(req, action="stage_assigned", actor_email="system",
                  message=f"{label} waits for {resolved.email}" + (" (guest)" if resolved.member is None else "")
                  + (f". {resolved.note}" if resolved.note else ""),
                  details={"stage": approval.stage, "approver": resolved.email, "guest": resolved.member is None})
        publish(AccessApprovalRequested(organization_id=req.organization_id, request_id=str(req.pk),
                                        approval_id=approval.pk))
    return approval


# Deciding ----------------------------------------------------------------------------------------------------


def current_approval(req: AccessRequest) -> Approval | None:
    if req.status != RequestStatus.PENDING:
        return None
    return Approval.objects.filter(access_request=req, stage=req.current_stage).select_related("approver__user").first()


def may_decide(*, approval: Approval | None, actor: Membership) -> bool:
    """The current approver, or the end of their standing delegation chain today."""
    if approval is None or approval.decision != ApprovalDecision.PENDING or approval.approver_id is None:
        return False
    if approval.approver_id == actor.pk:
        return True
    try:
        return delegate_final(member=approval.approver, day=timezone.localdate()).pk == actor.pk
    except ReassignError:
        return False


def _lock(req: AccessRequest) -> AccessRequest:
    return AccessRequest.objects.select_for_update(of=("self",)).select_related(
        "identity", "application", "organization").get(pk=req.pk)


@transaction.atomic
def access_request_decide(*, req: AccessRequest, actor: Membership | None, decision: str, reason: str,
                          guest_approval: Approval | None = None, request=None) -> AccessRequest:
    """The current approver (a member, their delegate, or the guest holding the stage's link) approves or
    denies. A denial ends the request; the last approval makes it approved."""
    if actor is not None:
        assert_same_organization(req, actor)
    req = _lock(req)
    if decision not in ("approve", "deny"):
        raise AccessRequestError(f"decision: choose approve or deny, not {decision!r}.", field="decision")
    reason = (reason or "").strip()
    if decision == "deny" and not reason:
        raise AccessRequestError("reason: say why the access is denied.", field="reason")
    approval = current_approval(req)
    if approval is None:
        raise AccessRequestError(f"status: the request is {req.get_status_display().lower()}; there is nothing to "
                                 "decide.", field="status")
    if guest_approval is not None:
        if guest_approval.pk != approval.pk:
            raise PermissionDenied("This link is for a stage that is not waiting for a decision.")
        who = approval.approver_email
    else:
        assert actor is not None
        who = actor.user.email
        if who.lower() in (req.identity.email.lower(), req.requested_by_email.lower()):
            raise PermissionDenied("Nobody approves their own request or a request for their own access.")
        if not may_decide(approval=approval, actor=actor):
            raise PermissionDenied("Only the current approver of this request (or their delegate) decides it.")
    now = timezone.now()
    approval.decision = ApprovalDecision.APPROVED if decision == "approve" else ApprovalDecision.DENIED
    approval.reason = reason
    approval.decided_by_email = who
    approval.decided_at = now
    approval.token_hash = ""
    approval.save(update_fields=["decision", "reason", "decided_by_email", "decided_at", "token_hash"])
    label = f"Stage {approval.stage + 1}"
    via = "" if who.lower() == approval.approver_email.lower() else f" for {approval.approver_email}"
    trail_add(req, action="approved" if decision == "approve" else "denied", actor_email=who,
              message=f"{label} {'approved' if decision == 'approve' else 'denied'} by {who}{via}"
              + (f": {reason}" if reason else ""),
              details={"stage": approval.stage, "reason": reason, "guest": guest_approval is not None})
    _audit(req, "approved" if decision == "approve" else "denied", actor=actor, request=request,
           details={"stage": approval.stage, "reason": reason, "by": who}, actor_email=who)
    if decision == "deny":
        _close(req, RequestStatus.DENIED, now)
    elif req.current_stage + 1 < len(req.stages):
        req.current_stage += 1
        req.save(update_fields=["current_stage"])
        _stage_start(req)
    else:
        _close(req, RequestStatus.APPROVED, now)
        trail_add(req, action="approved_all", actor_email="system",
                  message="Every stage approved: the change goes to the application's ticketing system.")
    return req


def _close(req: AccessRequest, status: str, now: dt.datetime) -> None:
    req.status = status
    req.decided_at = now
    req.save(update_fields=["status", "decided_at"])
    Approval.objects.filter(access_request=req, decision__in=[ApprovalDecision.WAITING, ApprovalDecision.PENDING]
                            ).update(decision=ApprovalDecision.SKIPPED, token_hash="")
    publish(AccessRequestDecided(organization_id=req.organization_id, request_id=str(req.pk), outcome=status))


@transaction.atomic
def access_request_cancel(*, req: AccessRequest, actor: Membership, request=None) -> AccessRequest:
    req = _lock(req)
    if req.requested_by_id != actor.pk:
        raise PermissionDenied("Only whoever made the request cancels it.")
    if req.status != RequestStatus.PENDING:
        raise AccessRequestError(f"status: the request is {req.get_status_display().lower()}; only a pending "
                                 "request can be cancelled.", field="status")
    trail_add(req, action="cancelled", actor_email=actor.user.email, message=f"Cancelled by {actor.user.email}")
    _audit(req, "cancelled", actor=actor, request=request)
    _close(req, RequestStatus.CANCELLED, timezone.now())
    return req


@transaction.atomic
def approval_reassign(*, req: AccessRequest, actor: Membership, to: str, reason: str, request=None) -> Approval:
    """An admin hands the current stage to another member (an unassigned stage included)."""
    if not has_perm(actor.role, Perm.MANAGE_SETTINGS):
        raise PermissionDenied(f"Your role ({actor.role}) does not allow reassigning approvals.")
    req = _lock(req)
    approval = current_approval(req)
    if approval is None:
        raise AccessRequestError(f"status: the request is {req.get_status_display().lower()}.", field="status")
    reason = (reason or "").strip()
    if not reason:
        raise AccessRequestError("reason: say why the approval moves.", field="reason")
    member = membership_by_email(organization=req.organization, email=to or "")
    if member is None or member.role not in REVIEWER_ROLES or not member.user.is_active:
        raise AccessRequestError(f"to: {to or '(empty)'} is not a member who may approve.", field="to")
    refused = _excluded_emails(req) | {req.identity.email.lower()}
    if member.user.email.lower() in refused:
        raise AccessRequestError(f"to: {member.user.email} requested this access, holds it, or approved an earlier "
                                 "stage.", field="to")
    previous = approval.approver_email or "nobody"
    approval.approver = member
    approval.approver_email = member.user.email
    approval.note = f"Reassigned by {actor.user.email}: {reason}"[:300]
    approval.assigned_at = timezone.now()
    approval.token_hash = ""
    approval.save(update_fields=["approver", "approver_email", "note", "assigned_at", "token_hash"])
    trail_add(req, action="reassigned", actor_email=actor.user.email,
              message=f"Stage {approval.stage + 1} moved from {previous} to {member.user.email}: {reason}")
    _audit(req, "reassigned", actor=actor, request=request, details={"from": previous, "to": member.user.email,
                                                                     "reason": reason})
    publish(AccessApprovalRequested(organization_id=req.organization_id, request_id=str(req.pk),
                                    approval_id=approval.pk))
    return approval


# Periodic work --------------------------------------------------------------------------------------------


def access_requests_expire_due(*, organization_id: int, now: dt.datetime | None = None) -> int:
    """Pending requests past their approval deadline expire (the requester is told). Safe to run twice."""
    now = now or timezone.now()
    expired = 0
    with scope(organization_id=organization_id):
        for pk in list(AccessRequest.objects.filter(status=RequestStatus.PENDING, approval_deadline__lte=now)
                       .values_list("pk", flat=True)):
            with transaction.atomic():
                req = AccessRequest.objects.select_for_update().filter(pk=pk, status=RequestStatus.PENDING).first()
                if req is None:
                    continue
                trail_add(req, action="expired", actor_email="system",
                          message=f"Expired: not decided by {req.approval_deadline:%Y-%m-%d %H:%M %Z}.")
                _audit(req, "expired")
                _close(req, RequestStatus.EXPIRED, now)
                expired += 1
    return expired


def temporary_access_end_due(*, organization_id: int, now: dt.datetime | None = None) -> int:
    """Temporary grants whose end has come: the access is to be removed (a revoke ticket follows)."""
    now = now or timezone.now()
    ended = 0
    with scope(organization_id=organization_id):
        due = AccessRequest.objects.filter(
            type=RequestType.GRANT, ends_at__lte=now, access_ended_at__isnull=True,
            status__in=[RequestStatus.APPROVED, RequestStatus.FULFILLING, RequestStatus.FULFILLED],
        ).values_list("pk", flat=True)
        for pk in list(due):
            with transaction.atomic():
                # The claim: one run moves the request past its end.
                if AccessRequest.objects.filter(pk=pk, access_ended_at__isnull=True).update(access_ended_at=now) != 1:
                    continue
                req = AccessRequest.objects.select_related("identity", "application").get(pk=pk)
                trail_add(req, action="access_ended", actor_email="system",
                          message=f"Temporary access ended on {req.ends_at:%Y-%m-%d %H:%M %Z}: {req.role} in "
                          f"{req.application.name} is to be removed.")
                _audit(req, "access_ended")
                publish(TemporaryAccessEnded(organization_id=organization_id, request_id=str(req.pk)))
                ended += 1
    return ended


def organizations_with_open_requests() -> list[int]:
    """Platform code: spans organizations."""
    return list(AccessRequest.unscoped.filter(status__in=[*OPEN_STATUSES, RequestStatus.FULFILLED])
                .values_list("organization_id", flat=True).distinct().order_by())


# Verification against the inventory ----------------------------------------------------------------------


def _verified(req: AccessRequest, status: str, stamp: str, now: dt.datetime, *, action: str, message: str) -> None:
    req.status = status
    setattr(req, stamp, now)
    req.save(update_fields=["status", stamp])
    trail_add(req, action=action, actor_email="system", message=message)
    _audit(req, action)
    publish(AccessRequestVerified(organization_id=req.organization_id, request_id=str(req.pk), status=status))


def access_requests_verify(*, organization_id: int, application_ids: Iterable[int]) -> dict[str, int]:
    """After an import or sync of these applications: an approved grant now present (or revoke now absent) is
    fulfilled; ended temporary access now absent is revoked. Reads the inventory as it is now, so running it
    again changes nothing."""
    application_ids = list(application_ids)
    result = {"fulfilled": 0, "revoked": 0}
    if not application_ids:
        return result
    now = timezone.now()
    with scope(organization_id=organization_id), transaction.atomic():
        candidates = AccessRequest.objects.select_for_update(of=("self",)).select_related(
            "identity", "application").filter(application_id__in=application_ids).filter(
            status__in=[*AWAITING_VERIFICATION, RequestStatus.FULFILLED])
        for req in candidates:
            present = Entitlement.objects.filter(identity_id=req.identity_id, application_id=req.application_id,
                                                 role__iexact=req.role, present=True).exists()
            if req.access_ended_at is not None:
                if not present:
                    _verified(req, RequestStatus.REVOKED, "revoked_at", now, action="removal_verified",
                              message=f"Removal verified: the latest sync of {req.application.name} no longer "
                              f"lists {req.role} for {req.identity.email}.")
                    result["revoked"] += 1
            elif req.status != RequestStatus.FULFILLED and present == (req.type == RequestType.GRANT):
                seen = "lists" if present else "no longer lists"
                _verified(req, RequestStatus.FULFILLED, "fulfilled_at", now, action="fulfilled",
                          message=f"Verified: the latest sync of {req.application.name} {seen} {req.role} for "
                          f"{req.identity.email}.")
                result["fulfilled"] += 1
    return result


# Tickets (recorded by the ITSM area) ---------------------------------------------------------------------


def request_ticket_record(*, req: AccessRequest, purpose: str, state: str, key: str = "", url: str = "",
                          error: str = "", trail: str = "") -> None:
    """The ITSM area tells the request where its ticket stands; the first ticket of a grant or revoke moves the
    request to ``fulfilling``. Inside the caller's transaction and scope."""
    fields = {"ticket_state": state, "ticket_key": key, "ticket_url": url, "ticket_error": error}
    if purpose == "fulfil" and state not in ("failed", "waiting") and req.status == RequestStatus.APPROVED:
        fields["status"] = RequestStatus.FULFILLING
    AccessRequest.objects.filter(pk=req.pk).update(**fields)
    for name, value in fields.items():
        setattr(req, name, value)
    if trail:
        trail_add(req, action=f"ticket_{state}", actor_email="system", message=trail,
                  details={"purpose": purpose, "key": key, "url": url, "error": error[:500]})
