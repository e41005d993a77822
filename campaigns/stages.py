"""Multi-stage reviews: an item is pending in one stage at a time. When its reviewer signs off a decision the
stage lists in ``advance_on`` it moves to the next stage and is assigned by that stage's strategy (members,
guest reviewers, delegation, fallback, as at launch); any other decision is final. Nobody decides an item in
two stages. When an item's stage deadline passes undecided, the stage's deadline outcome applies (beat task
``campaigns.stage_deadlines``).

Locks: like every decision writer, the campaign row first, then its items."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
import zlib
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from entitlements.models import Application
from thalian.audit import audit_record
from thalian.events import ItemsReassigned, publish
from thalian.models import Membership
from thalian.tenancy import scope

from .decisions import (
    KIND_SYSTEM,
    SYSTEM_ACTOR,
    _append_events,
    _EventTemplate,
    _publish_decisions,
    _update_items,
)
from .delegation import delegate_final
from .guests import guest_link_expiry, guest_links_send_all
from .models import (
    Campaign,
    CampaignStage,
    CampaignStatus,
    DeadlineOutcome,
    Decision,
    GuestReviewer,
    ItemReassignment,
    ReassignKind,
    ReviewerStrategy,
    ReviewItem,
)
from .reassignment import ReassignError, review_items_move
from .selectors import REVIEWER_ROLES

BATCH = 1000
NOTE_LENGTH = 300
# What an advancing item's row needs: its current decision (the stage it leaves) and what assignment reads.
_ROW_FIELDS = (
    "pk", "stage", "decision", "decision_reason", "decided_by_email", "decided_by_role", "decided_at",
    "stage_decisions", "stage_path", "application_id", "application_name", "identity_email",
    "identity_manager_email", "reviewer_email",
)


def campaign_stages(*, campaign: Campaign) -> list[CampaignStage]:
    """The campaign's stages in order (empty for a single-stage campaign)."""
    if not campaign.is_multi_stage:
        return []
    return list(CampaignStage.objects.filter(campaign_id=campaign.pk).select_related("fallback_reviewer__user"))


def stage_is_final(*, stages: dict[int, CampaignStage], stage: int, decision: str) -> bool:
    """Whether a decision taken in ``stage`` ends the item's review (it does not move on)."""
    if not stages or stage >= max(stages):
        return True
    current = stages.get(stage)
    return current is None or not current.advances(decision)


def final_item_ids(*, campaign: Campaign, decision: str, stage_of: dict[int, int | None]) -> list[int]:
    """Of items just decided ``decision``, those for which it is final (all of them in a single stage)."""
    if not campaign.is_multi_stage:
        return list(stage_of)
    stages = {s.number: s for s in CampaignStage.objects.filter(campaign_id=campaign.pk)}
    return [pk for pk, stage in stage_of.items() if stage_is_final(stages=stages, stage=stage or 1, decision=decision)]


def earlier_deciders(stage_decisions: Iterable[dict]) -> dict[str, int]:
    """E-mail (lower-case) -> the stage they decided, over an item's earlier stages."""
    found: dict[str, int] = {}
    for entry in stage_decisions or []:
        by = (entry.get("decided_by") or "").lower()
        if by and by != SYSTEM_ACTOR and entry.get("decision"):
            found.setdefault(by, entry["stage"])
    return found


def stage_path_marker(email: str) -> str:
    """The text ``stage_path`` holds for a decider (used to find items someone decided in an earlier stage)."""
    return f" by {email.strip().lower()} ("


def stage_entry_text(entry: dict) -> str:
    # To the second, as the exports write timestamps ("2026-03-02T09:00:00Z").
    decided_at = (entry.get("decided_at") or "")[:19] + "Z" if entry.get("decided_at") else ""
    if not entry.get("decision"):
        return f"stage {entry['stage']}: no decision ({entry.get('reason', '')}); "
    return (f"stage {entry['stage']}: {entry['decision']} by {(entry.get('decided_by') or '').lower()} "
            f"({entry.get('decided_by_role') or 'reviewer'}) at {decided_at}; ")


def decision_path_text(item: ReviewItem) -> str:
    """The final decision and how it got there: "Revoked at stage 2 by x after approval at stage 1 by y"."""
    verbs = {"approve": "Approved", "revoke": "Revoked", "exception": "Exception granted"}
    nouns = {"approve": "approval", "revoke": "revoke", "exception": "exception"}
    earlier = [e for e in item.stage_decisions or []]
    if item.decision:
        head = f"{verbs.get(item.decision, item.decision)} at stage {item.stage} by {item.decided_by_email}"
    else:
        head = f"Pending at stage {item.stage}"
    if not earlier:
        return head if item.stage > 1 or item.decision else ""
    parts = [
        f"{nouns.get(e['decision'], e['decision'])} at stage {e['stage']} by {e.get('decided_by')}" if e.get("decision")
        else f"no decision at stage {e['stage']} (carried forward)"
        for e in reversed(earlier)
    ]
    return f"{head} after {', after '.join(parts)}"


def campaign_progress_by_stage(*, campaign: Campaign) -> list[dict]:
    """Per stage (multi-stage campaigns): how many items reached it, are pending or decided there, moved on,
    ended there, are past their deadline or unassigned; one GROUP BY over the items."""
    rows = campaign_stages(campaign=campaign)
    if not rows:
        return []
    now = timezone.now()
    counts = {
        r["stage"]: r
        for r in ReviewItem.objects.filter(campaign_id=campaign.pk).values("stage").order_by().annotate(
            total=Count("id"),
            decided=Count("id", filter=~Q(decision="")),
            signed_off=Count("id", filter=Q(signed_off_at__isnull=False)),
            overdue=Count("id", filter=Q(decision="", stage_due_at__lt=now)),
            unassigned=Count("id", filter=Q(reviewer__isnull=True, guest__isnull=True)),
        )
    }
    result = []
    for stage in rows:
        here = counts.get(stage.number, {})
        moved_on = sum(c["total"] for n, c in counts.items() if n > stage.number)
        total = here.get("total", 0)
        reached = total + moved_on
        done = moved_on + here.get("signed_off", 0)
        result.append({
            "stage": stage.number, "reviewer_strategy": stage.reviewer_strategy,
            "fallback_reviewer": stage.fallback_reviewer.user.email, "reached": reached,
            "pending": total - here.get("decided", 0), "decided": here.get("decided", 0),
            "signed_off": here.get("signed_off", 0), "moved_on": moved_on, "final": here.get("signed_off", 0),
            "overdue": here.get("overdue", 0), "unassigned": here.get("unassigned", 0), "done": done,
            "percent": round(100 * done / reached) if reached else 0,
        })
    return result


# ---------------------------------------------------------------------------------------------
# Launch


def stages_start_at_launch(*, campaign: Campaign, now: dt.datetime) -> None:
    """After the snapshot (stage 1 assigned by the campaign's reviewer fields, its deadline written by the
    snapshot's own INSERT): stage 1 starts now."""
    if campaign.is_multi_stage:
        CampaignStage.objects.filter(campaign_id=campaign.pk, number=1).update(started_at=now)


# ---------------------------------------------------------------------------------------------
# Assignment in a later stage


@dataclasses.dataclass
class _Assignment:
    reviewer: Membership | None
    email: str  # the reviewer's e-mail (a guest's when reviewer is None); empty: unassigned
    guest: bool
    note: str


def _named_candidate(named: dict, application_name: str, identity_email: str) -> str | None:
    emails = named.get(application_name) or named.get("*") or []
    if not emails:
        return None
    # One identity's grants stay with one reviewer, as at launch.
    return emails[zlib.crc32(identity_email.lower().encode()) % len(emails)].lower()


def _assignments(*, campaign: Campaign, stage: CampaignStage, rows: list[dict]) -> dict[int, _Assignment]:
    """Who reviews each row in ``stage``: the strategy's candidate unless they are the identity, decided an earlier
    stage of the item, or are not a member who can review (then a guest where allowed, else the fallback)."""
    organization = campaign.organization
    strategy = stage.reviewer_strategy
    members = {
        m.user.email.lower(): m
        for m in Membership.objects.filter(
            organization_id=campaign.organization_id, role__in=REVIEWER_ROLES, user__is_active=True
        ).select_related("user")
    }
    owners: dict[int, str] = {}
    if strategy == ReviewerStrategy.APPLICATION_OWNER:
        owners = {
            pk: (email or "").lower()
            for pk, email in Application.objects.filter(
                pk__in={r["application_id"] for r in rows if r["application_id"]}
            ).values_list("pk", "owner_email")
        }
        who, why_none = "Application owner ", "The application has no owner"
    elif strategy == ReviewerStrategy.MANAGER:
        who, why_none = "Manager ", "The identity has no manager in the inventory"
    else:
        who, why_none = "Named reviewer ", "No reviewer is named for this application"
    guests = strategy != ReviewerStrategy.MEMBERS and organization.allows_guest_reviewers
    fallback = stage.fallback_reviewer
    fallback_email = fallback.user.email.lower()
    today = timezone.localdate()
    finals: dict[int, Membership] = {}

    def final(member: Membership) -> Membership:
        if member.pk not in finals:
            try:
                finals[member.pk] = delegate_final(member=member, day=today)
            except ReassignError:
                finals[member.pk] = member  # a loop made after the fact: the member keeps the item
        return finals[member.pk]

    prefix = f"Stage {stage.number}: "
    result: dict[int, _Assignment] = {}
    for row in rows:
        identity = row["identity_email"].lower()
        deciders = earlier_deciders(row["new_stage_decisions"])
        if strategy == ReviewerStrategy.APPLICATION_OWNER:
            candidate = owners.get(row["application_id"]) or None
        elif strategy == ReviewerStrategy.MANAGER:
            candidate = (row["identity_manager_email"] or "").lower() or None
        else:
            candidate = _named_candidate(stage.reviewers or {}, row["application_name"], identity)
        why = ""
        if not candidate:
            why = why_none
        elif candidate == identity:
            why = f"Self-review avoided: {candidate} is the identity under review"
        elif candidate in deciders:
            why = (f"{candidate} decided this item at stage {deciders[candidate]}, and nobody decides an item in "
                   "two stages")
        elif candidate in members:
            member = members[candidate]
            delegate = final(member)
            note = prefix + f"{who}{candidate}"
            if delegate.pk != member.pk:
                delegate_email = delegate.user.email.lower()
                if delegate_email != identity and delegate_email not in deciders and delegate.role in REVIEWER_ROLES:
                    member = delegate
                    note += f"; standing delegation to {delegate_email}"
            result[row["pk"]] = _Assignment(member, member.user.email.lower(), False, note[:NOTE_LENGTH])
            continue
        elif guests:
            result[row["pk"]] = _Assignment(None, candidate, True,
                                            (prefix + f"{who}{candidate} is not a member: guest reviewer")[:NOTE_LENGTH])
            continue
        else:
            why = f"{who}{candidate} is not a member who can review"
        if fallback_email == identity:
            note = (f"{why}; the fallback reviewer is also the identity under review, so the item is unassigned until "
                    "an admin reassigns it")
            result[row["pk"]] = _Assignment(None, "", False, (prefix + note)[:NOTE_LENGTH])
        elif fallback_email in deciders:
            note = (f"{why}; the fallback reviewer {fallback_email} also decided this item at stage "
                    f"{deciders[fallback_email]}, so it is unassigned until an admin reassigns it")
            result[row["pk"]] = _Assignment(None, "", False, (prefix + note)[:NOTE_LENGTH])
        else:
            result[row["pk"]] = _Assignment(fallback, fallback_email, False,
                                            (prefix + f"{why}: assigned to the fallback reviewer")[:NOTE_LENGTH])
    return result


def _guest_ids(*, campaign: Campaign, emails: set[str]) -> dict[str, int]:
    """Guest reviewers of the campaign for these e-mails (created when new); links go out after commit."""
    if not emails:
        return {}
    expires_at = guest_link_expiry(campaign)
    GuestReviewer.objects.bulk_create(
        [GuestReviewer(organization_id=campaign.organization_id, campaign=campaign, email=e, expires_at=expires_at)
         for e in sorted(emails)],
        ignore_conflicts=True,
    )
    organization_id, campaign_pk = campaign.organization_id, campaign.pk
    transaction.on_commit(lambda: guest_links_send_all(organization_id=organization_id, campaign_id=campaign_pk))
    return dict(GuestReviewer.objects.filter(campaign_id=campaign.pk, email__in=emails).values_list("email", "pk"))


def _entry(row: dict, *, carried: str = "") -> dict:
    if carried:
        return {"stage": row["stage"], "decision": None, "reason": carried, "decided_by": SYSTEM_ACTOR,
                "decided_by_role": SYSTEM_ACTOR, "decided_at": timezone.now().isoformat().replace("+00:00", "Z")}
    decided_at = row["decided_at"]
    return {
        "stage": row["stage"],
        "decision": row["decision"],
        "reason": row["decision_reason"],
        "decided_by": row["decided_by_email"],
        "decided_by_role": row["decided_by_role"] or ("system" if row["decided_by_email"] == SYSTEM_ACTOR else ""),
        "decided_at": decided_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if decided_at else None,
    }


def _advance(
    *, campaign: Campaign, stages: dict[int, CampaignStage], rows: list[dict], by_email: str, trigger: str,
    carried: str = "",
) -> int:
    """Move rows (all in one stage) to the next stage: record the stage they leave, assign the next stage's
    reviewer, restart the decision. Inside the caller's transaction, the campaign row locked."""
    if not rows:
        return 0
    now = timezone.now()
    from_stage = rows[0]["stage"]
    target = stages[from_stage + 1]
    for row in rows:
        entry = _entry(row, carried=carried)
        row["new_stage_decisions"] = [*(row["stage_decisions"] or []), entry]
        row["new_stage_path"] = (row["stage_path"] or "") + stage_entry_text(entry)
    assignments = _assignments(campaign=campaign, stage=target, rows=rows)
    guest_ids = _guest_ids(campaign=campaign, emails={a.email for a in assignments.values() if a.guest})
    due = now + dt.timedelta(days=target.duration_days)
    updates = []
    for row in rows:
        a = assignments[row["pk"]]
        updates.append(ReviewItem(
            pk=row["pk"], stage=target.number, stage_due_at=due, stage_decisions=row["new_stage_decisions"],
            stage_path=row["new_stage_path"], decision="", decision_reason="", decision_comment="", decided_by=None,
            decided_by_email="", decided_by_role="", decided_at=None, exception_expires_on=None, signed_off_at=None,
            reviewer=a.reviewer, reviewer_email=a.email, guest_id=guest_ids.get(a.email) if a.guest else None,
            assignment_note=a.note,
        ))
    ReviewItem.objects.bulk_update(
        updates,
        ["stage", "stage_due_at", "stage_decisions", "stage_path", "decision", "decision_reason", "decision_comment",
         "decided_by", "decided_by_email", "decided_by_role", "decided_at", "exception_expires_on", "signed_off_at",
         "reviewer", "reviewer_email", "guest", "assignment_note"],
        batch_size=BATCH,
    )
    ItemReassignment.objects.bulk_create(
        [ItemReassignment(organization_id=campaign.organization_id, campaign_id=campaign.pk, item_id=row["pk"],
                          from_email=row["reviewer_email"], to_email=assignments[row["pk"]].email, by_email=by_email,
                          reason=assignments[row["pk"]].note, kind=ReassignKind.STAGE, created_at=now)
         for row in rows],
        batch_size=BATCH,
    )
    CampaignStage.objects.filter(pk=target.pk, started_at__isnull=True).update(started_at=now)
    per_member: dict[int, int] = {}
    for a in assignments.values():
        if a.reviewer is not None:
            per_member[a.reviewer.pk] = per_member.get(a.reviewer.pk, 0) + 1
    for reviewer_id, count in sorted(per_member.items()):
        publish(ItemsReassigned(organization_id=campaign.organization_id, campaign_id=str(campaign.pk),
                                reviewer_id=reviewer_id, count=count))
    fallback = target.fallback_reviewer.user.email.lower()
    audit_record(
        action="campaign_stage_advanced",
        organization_id=campaign.organization_id,
        target=campaign,
        actor_email=by_email,
        system=by_email == SYSTEM_ACTOR,
        details={
            "from_stage": from_stage, "to_stage": target.number, "count": len(rows), "trigger": trigger,
            "to_fallback": sum(1 for a in assignments.values() if a.email == fallback and a.reviewer is not None
                               and "fallback" in a.note),
            "unassigned": sum(1 for a in assignments.values() if not a.email),
            "guests": sum(1 for a in assignments.values() if a.guest),
            "items": [row["pk"] for row in rows[:100]],
        },
    )
    return len(rows)


def stage_items_advance(*, campaign: Campaign, item_ids: list[int], by_email: str, trigger: str) -> int:
    """Signed-off items whose stage decision moves them on go to their next stage (the rest keep their final
    decision). Inside the caller's transaction, the campaign row locked. Returns how many moved."""
    if not campaign.is_multi_stage or not item_ids:
        return 0
    stages = {s.number: s for s in campaign_stages(campaign=campaign)}
    last = max(stages)
    rows = list(
        ReviewItem.objects.filter(campaign_id=campaign.pk, pk__in=item_ids, stage__lt=last)
        .exclude(decision="")
        .order_by("pk")
        .values(*_ROW_FIELDS)
    )
    moved = 0
    for number in sorted(stages):
        group = [r for r in rows if r["stage"] == number and stages[number].advances(r["decision"])]
        moved += _advance(campaign=campaign, stages=stages, rows=group, by_email=by_email, trigger=trigger)
    return moved


# ---------------------------------------------------------------------------------------------
# Stage deadlines


def stage_deadlines_apply(*, campaign_id, now: dt.datetime | None = None) -> dict[str, int]:
    """Apply each stage's deadline outcome to the items whose deadline in their stage has passed undecided.
    Idempotent: every outcome changes the items out of the condition that selected them (they move on, get
    a decision, or lose the deadline once escalated), and the campaign row is locked while it runs."""
    from .services import campaign_complete_if_done

    now = now or timezone.now()
    outcome = {"carried_forward": 0, "approve": 0, "revoke": 0, "escalated": 0}
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(of=("self",)).select_related("organization")
            .filter(pk=campaign_id, status=CampaignStatus.ACTIVE).first()
        )
        if campaign is None or not campaign.is_multi_stage:
            return outcome
        stages = {s.number: s for s in campaign_stages(campaign=campaign)}
        last = max(stages)
        for number, stage in sorted(stages.items()):
            due = ReviewItem.objects.filter(
                campaign_id=campaign.pk, stage=number, decision="", signed_off_at__isnull=True, stage_due_at__lt=now
            )
            kind = stage.deadline_outcome
            if kind == DeadlineOutcome.CARRY_FORWARD and number < last:
                rows = list(due.order_by("pk").values(*_ROW_FIELDS))
                outcome["carried_forward"] += _advance(
                    campaign=campaign, stages=stages, rows=rows, by_email=SYSTEM_ACTOR, trigger="deadline",
                    carried=f"No decision by the stage {number} deadline: carried forward to stage {number + 1}",
                )
                _deadline_audit(campaign, stage, kind, len(rows))
            elif kind in (DeadlineOutcome.APPROVE, DeadlineOutcome.REVOKE):
                outcome[kind] += _deadline_decide(campaign=campaign, stages=stages, stage=stage, items=due, now=now)
            else:
                outcome["escalated"] += _deadline_escalate(campaign=campaign, stage=stage, items=due)
    if any(outcome.values()):
        campaign_complete_if_done(campaign=campaign)
    return outcome


def _deadline_audit(campaign: Campaign, stage: CampaignStage, kind: str, count: int) -> None:
    if count:
        audit_record(
            action="campaign_stage_deadline", organization_id=campaign.organization_id, target=campaign, system=True,
            details={"stage": stage.number, "outcome": kind, "count": count},
        )


def _deadline_decide(
    *, campaign: Campaign, stages: dict[int, CampaignStage], stage: CampaignStage, items, now: dt.datetime
) -> int:
    decision = Decision(stage.deadline_outcome).value
    template = _EventTemplate(
        organization_id=campaign.organization_id, campaign_id=campaign.pk, decision=decision,
        reason=f"Deadline outcome of stage {stage.number}: the item was still undecided when the stage's deadline "
               "passed.",
        comment="", actor_id=None, actor_email=SYSTEM_ACTOR, actor_role=SYSTEM_ACTOR, kind=KIND_SYSTEM,
        created_at=now, bulk_id=uuid.uuid4(), stage=stage.number,
    )
    # The UPDATE carries the selection's conditions (undecided, past the deadline): a second run decides nothing.
    updated = _update_items(items, template)
    if not updated.ids:
        return 0
    _append_events(campaign=campaign, template=template, item_ids=updated.ids)
    ReviewItem.objects.filter(pk__in=updated.ids).update(signed_off_at=now)
    final = [pk for pk in updated.ids if stage_is_final(stages=stages, stage=stage.number, decision=decision)]
    moving = sorted(set(updated.ids) - set(final))
    if moving:
        stage_items_advance(campaign=campaign, item_ids=moving, by_email=SYSTEM_ACTOR, trigger="deadline")
    if decision == Decision.REVOKE:
        _publish_decisions(campaign, decision, final, all_final=True)
    _deadline_audit(campaign, stage, stage.deadline_outcome, len(updated.ids))
    return len(updated.ids)


def _deadline_escalate(*, campaign: Campaign, stage: CampaignStage, items) -> int:
    """Leave the items undecided, hand them to the stage's fallback reviewer (unless that would be a self-review
    or a second decision by the same person) and clear their deadline so they are escalated once."""
    ids = list(items.values_list("pk", flat=True))
    if not ids:
        return 0
    fallback = stage.fallback_reviewer
    movable = ReviewItem.objects.filter(pk__in=ids).exclude(
        stage_path__icontains=stage_path_marker(fallback.user.email)
    )
    review_items_move(
        campaign=campaign, items=movable, to_reviewer=fallback, by_email=SYSTEM_ACTOR,
        reason=f"No decision by the stage {stage.number} deadline", kind=ReassignKind.ESCALATION,
    )
    # Conditional on the deadline still being the one that passed: nothing is escalated twice.
    count = ReviewItem.objects.filter(pk__in=ids, stage=stage.number, decision="").update(stage_due_at=None)
    _deadline_audit(campaign, stage, DeadlineOutcome.ESCALATE, count)
    return count


def stage_deadlines_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Beat: every active multi-stage campaign with an item past its stage deadline. Platform code: spans
    organizations (each campaign is handled in its own organization's scope)."""
    now = now or timezone.now()
    campaign_ids = set(
        ReviewItem.unscoped.filter(
            campaign__status=CampaignStatus.ACTIVE, campaign__stage_count__gt=1, decision="",
            signed_off_at__isnull=True, stage_due_at__lt=now,
        ).values_list("organization_id", "campaign_id").distinct()
    )
    total = {"campaigns": 0, "carried_forward": 0, "approve": 0, "revoke": 0, "escalated": 0}
    for organization_id, campaign_id in sorted(campaign_ids, key=str):
        with scope(organization_id=organization_id):
            result = stage_deadlines_apply(campaign_id=campaign_id, now=now)
        total["campaigns"] += 1
        for key, value in result.items():
            total[key] += value
    return total
