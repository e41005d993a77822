"""Review decisions: single, bulk ("selected" and "all in view"), default outcomes at close, and sign-off.

Every decision updates the item's current decision and appends one DecisionEvent. Events of a campaign form a
hash chain (``campaigns.hashchain.decision_hash``); to keep the chain serial, every writer first locks the
campaign row (``SELECT ... FOR UPDATE``), reads ``chain_head``, appends, and moves ``chain_head`` in the same
transaction. The item row is locked after the campaign row, always in that order, so writers cannot deadlock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from django.core.exceptions import EmptyResultSet, PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from thalian.audit import audit_record
from thalian.events import DecisionsRecorded, ItemDecisionsWithdrawn, ReviewerSignedOff, publish
from thalian.models import Membership, User
from thalian.permissions import Perm, has_perm
from thalian.tenancy import assert_same_organization

from .hashchain import GENESIS_HASH, canonical_json, decision_hash, decision_hash_payload
from .models import (
    Campaign,
    CampaignStatus,
    Decision,
    DecisionEvent,
    DefaultOutcome,
    GuestReviewer,
    ReviewItem,
)

# The fields each DecisionEvent's hash covers, in the form ``decision_hash`` receives them. Every one of them
# is a column of DecisionEvent, so the chain can be recomputed from the table alone.
DECISION_HASH_FIELDS = (
    "item_id",
    "decision",
    "reason",
    "comment",
    "actor_email",
    "actor_role",
    "kind",
    "created_at",
    "expires_on",  # exceptions only; hashed only when set (campaigns.hashchain.OPTIONAL_HASH_FIELDS)
    "stage",  # multi-stage campaigns only; hashed only when set
    "on_behalf_of_email",  # a delegate's decisions only; hashed only when set
)

KIND_SINGLE = "single"
KIND_BULK = "bulk"
KIND_SYSTEM = "system"
SYSTEM_ACTOR = "system"
REASON_REQUIRED_DECISIONS = (Decision.REVOKE, Decision.EXCEPTION)
MAX_REASON_LENGTH = 2000
MAX_COMMENT_LENGTH = 4000
EVENT_BATCH_SIZE = 5000


def decision_event_fields(event: DecisionEvent) -> dict:
    """The hashed fields of a stored event (what a verifier recomputes the chain from)."""
    return {name: getattr(event, name) for name in DECISION_HASH_FIELDS}


# --------------------------------------------------------------------------------------------------
# Validation and authorization
# --------------------------------------------------------------------------------------------------


def exception_expiry_clean(
    *, organization, decision: str, expires_on: dt.date | None, today: dt.date | None = None
) -> dt.date | None:
    """The expiry date an exception decision gets: the one given (after today, within the organization's
    maximum) or, when none is given, today plus the organization's default. None for other decisions; giving
    a date with another decision is an error."""
    if decision != Decision.EXCEPTION:
        if expires_on is not None:
            raise ValidationError({"expires_on": f"Only exception decisions expire; a {decision} has no expiry date."})
        return None
    today = today or timezone.localdate()
    if expires_on is None:
        return today + dt.timedelta(days=organization.exception_default_days)
    latest = today + dt.timedelta(days=organization.exception_max_days)
    if expires_on <= today:
        raise ValidationError({"expires_on": f"The expiry date {expires_on.isoformat()} must be after today "
                                             f"({today.isoformat()})."})
    if expires_on > latest:
        raise ValidationError({"expires_on": f"The expiry date {expires_on.isoformat()} is more than "
                                             f"{organization.exception_max_days} days away; the latest allowed "
                                             f"is {latest.isoformat()}."})
    return expires_on


def decision_validate(*, campaign: Campaign, decision: str, reason: str, comment: str = "") -> tuple[str, str, str]:
    """Returns the cleaned (decision, reason, comment) or raises ValidationError naming what is wrong."""
    decision = (decision or "").strip().lower()
    reason = (reason or "").strip()
    comment = (comment or "").strip()
    errors: dict[str, str] = {}
    if decision not in Decision.values:
        errors["decision"] = f"Decision must be one of {', '.join(Decision.values)}; got {decision!r}."
    elif campaign.reason_required and decision in REASON_REQUIRED_DECISIONS and not reason:
        errors["reason"] = f"A reason is required to {decision} access in this campaign."
    if len(reason) > MAX_REASON_LENGTH:
        errors["reason"] = f"The reason is {len(reason)} characters long; at most {MAX_REASON_LENGTH} are allowed."
    if len(comment) > MAX_COMMENT_LENGTH:
        errors["comment"] = (
            f"The comment is {len(comment)} characters long; at most {MAX_COMMENT_LENGTH} are allowed."
        )
    if errors:
        raise ValidationError(errors)
    return decision, reason, comment


def _require_decidable_campaign(campaign: Campaign) -> None:
    if campaign.status != CampaignStatus.ACTIVE:
        raise ValidationError(
            f"Decisions can only be made while the campaign is active; this campaign is {campaign.status}."
        )


# Who decides: a member, or a guest reviewer (a GuestReviewer, deciding only the items assigned to them).
Reviewer = Membership | GuestReviewer


def actor_email(actor: Reviewer) -> str:
    return (actor.email if isinstance(actor, GuestReviewer) else actor.user.email or "").strip()


def assigned_q(actor: Reviewer) -> Q:
    """The items assigned to this reviewer."""
    return Q(guest_id=actor.pk) if isinstance(actor, GuestReviewer) else Q(reviewer_id=actor.pk)


def is_assigned(item: ReviewItem, actor: Reviewer) -> bool:
    return item.guest_id == actor.pk if isinstance(actor, GuestReviewer) else item.reviewer_id == actor.pk


def membership_can_decide_any(membership: Reviewer) -> bool:
    return not isinstance(membership, GuestReviewer) and has_perm(membership.role, Perm.DECIDE_ANY)


def _require_can_decide(membership: Reviewer) -> None:
    if isinstance(membership, GuestReviewer):
        return
    if not has_perm(membership.role, Perm.DECIDE_ASSIGNED):
        raise PermissionDenied(f"Your role ({membership.role}) does not allow deciding review items.")


def is_own_access(item: ReviewItem, membership: Reviewer) -> bool:
    """Whether the item's identity is the reviewer themselves (e-mails compared case-insensitively)."""
    return (item.identity_email or "").strip().lower() == actor_email(membership).lower()


def _own_access_q(membership: Reviewer) -> Q:
    return Q(identity_email__iexact=actor_email(membership))


def decided_earlier_stage(item: ReviewItem, actor: Reviewer) -> int | None:
    """The earlier stage of a multi-stage item the actor decided (nobody decides an item in two stages)."""
    email = actor_email(actor).lower()
    for entry in item.stage_decisions or []:
        if entry.get("decision") and (entry.get("decided_by") or "").lower() == email:
            return entry["stage"]
    return None


def _earlier_stage_q(campaign: Campaign, membership: Reviewer) -> Q | None:
    """Items of a multi-stage campaign the member decided in an earlier stage (None for single-stage ones)."""
    if not campaign.is_multi_stage:
        return None
    return Q(stage_path__icontains=f" by {actor_email(membership).lower()} (")


def _audit_actor(actor: Reviewer) -> dict:
    """audit_record arguments naming the actor (a guest has no user account)."""
    return {"actor": actor.user, "actor_email": actor_email(actor)}


def self_review_message(item: ReviewItem) -> str:
    return (
        f"You cannot decide your own access: this item's identity ({item.identity_email}) is you. Independent "
        "review needs another reviewer; an admin can reassign it."
    )


def _lock_campaign(campaign: Campaign) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign.pk)


def _lock_for_decision(
    campaign: Campaign, *, decision: str, reason: str, comment: str
) -> tuple[Campaign, str, str, str]:
    """Inside the caller's transaction: locks the campaign, then returns it with the cleaned decision, reason
    and comment, or raises ValidationError when they are wrong or the campaign takes no decisions."""
    campaign = _lock_campaign(campaign)
    decision, reason, comment = decision_validate(
        campaign=campaign, decision=decision, reason=reason, comment=comment
    )
    _require_decidable_campaign(campaign)
    return campaign, decision, reason, comment


# --------------------------------------------------------------------------------------------------
# The hash chain
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _EventTemplate:
    """What all events of one write share; only the item differs."""

    organization_id: int
    campaign_id: uuid.UUID
    decision: str
    reason: str
    comment: str
    actor_id: int | None
    actor_email: str
    actor_role: str
    kind: str
    created_at: dt.datetime
    bulk_id: uuid.UUID | None = None
    expires_on: dt.date | None = None
    stage: int | None = None  # multi-stage campaigns: the stage the decision is taken in
    on_behalf_of_email: str = ""  # one item's (``behalf_sql`` gives each item of a bulk write its own)
    assigned_column: str = ""  # "reviewer_id" or "guest_id": the actor's own items, for ``behalf_sql``
    assigned_id: int | None = None

    @classmethod
    def by_member(
        cls,
        *,
        campaign: Campaign,
        actor: Membership,
        decision: str,
        reason: str,
        comment: str,
        kind: str,
        bulk_id: uuid.UUID | None = None,
        expires_on: dt.date | None = None,
        stage: int | None = None,
    ) -> _EventTemplate:
        """A write by a member of the organization, stamped now."""
        return cls(
            organization_id=campaign.organization_id,
            campaign_id=campaign.pk,
            decision=decision,
            reason=reason,
            comment=comment,
            actor_id=actor.user_id,
            actor_email=actor_email(actor),
            actor_role=actor.role,
            kind=kind,
            created_at=timezone.now(),
            bulk_id=bulk_id,
            expires_on=expires_on,
            stage=stage,
            assigned_column="guest_id" if isinstance(actor, GuestReviewer) else "reviewer_id",
            assigned_id=actor.pk,
        )

    def fields(self, item_id: int, on_behalf_of_email: str | None = None) -> dict:
        return {
            "item_id": item_id,
            "decision": self.decision,
            "reason": self.reason,
            "comment": self.comment,
            "actor_email": self.actor_email,
            "actor_role": self.actor_role,
            "kind": self.kind,
            "created_at": self.created_at,
            "expires_on": self.expires_on,
            "stage": self.stage,
            "on_behalf_of_email": self.on_behalf_of_email if on_behalf_of_email is None else on_behalf_of_email,
        }

    def hasher(self):
        """A function (prev_hash, item_id) -> hash equal to ``decision_hash(prev_hash, self.fields(item_id))``.

        Events of one write differ only in item id and previous hash, so the canonical JSON is encoded once
        with two unique markers and split around them; each event then costs one concatenation and one
        SHA-256. Both values are digits or hex, which JSON encodes verbatim. If the markers cannot be found
        exactly once (they are random, so only in theory), it falls back to the general function.
        """
        item_marker, prev_marker = f"i{uuid.uuid4().hex}", f"p{uuid.uuid4().hex}"
        payload = decision_hash_payload(self.fields(0))
        payload["item_id"], payload["prev_hash"] = item_marker, prev_marker
        text = canonical_json(payload)
        item_b, prev_b = item_marker.encode(), prev_marker.encode()
        if text.count(item_b) != 1 or text.count(prev_b) != 1:
            return lambda prev_hash, item_id: decision_hash(prev_hash, self.fields(item_id))
        item_first = text.index(item_b) < text.index(prev_b)
        first_b, second_b = (item_b, prev_b) if item_first else (prev_b, item_b)
        a, rest = text.split(first_b)
        b, c = rest.split(second_b)
        sha256 = hashlib.sha256

        if item_first:

            def digest(prev_hash: str, item_id: int) -> str:
                return sha256(b"".join((a, str(item_id).encode(), b, (prev_hash or GENESIS_HASH).encode(), c))).hexdigest()

        else:

            def digest(prev_hash: str, item_id: int) -> str:
                return sha256(b"".join((a, (prev_hash or GENESIS_HASH).encode(), b, str(item_id).encode(), c))).hexdigest()

        return digest


def _copy_text(value) -> str:
    """A value as a field of PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _append_events(
    *, campaign: Campaign, template: _EventTemplate, item_ids: Sequence[int], stage_of: dict[int, int] | None = None,
    behalf: dict[int, str] | None = None,
) -> str:
    """Appends one event per item (in the given order) to the campaign's chain, moves chain_head, returns it.
    ``stage_of`` (multi-stage campaigns) gives each item's stage when one write spans stages; ``behalf`` names,
    for the items a delegate decided, whose review it was (their events hash it too).

    The caller holds the campaign row lock. On PostgreSQL the rows go in with COPY; elsewhere bulk_create.
    """
    behalf = behalf or {}
    # Events of one write differ per item only in item id and hashes, and in a few variants (the stage, the
    # member a delegate decided for): one template, hasher and COPY prefix per variant.
    templates: dict[tuple, _EventTemplate] = {}
    digests: dict[tuple, object] = {}
    prefixes: dict[tuple, str] = {}

    def variant(item_id: int) -> tuple:
        stage = stage_of.get(item_id, template.stage) if stage_of else template.stage
        return stage, behalf.get(item_id, template.on_behalf_of_email)

    def template_of(key: tuple) -> _EventTemplate:
        if key not in templates:
            templates[key] = dataclasses.replace(template, stage=key[0], on_behalf_of_email=key[1])
        return templates[key]

    def digest(prev_hash: str, key: tuple, item_id: int) -> str:
        if key not in digests:
            digests[key] = template_of(key).hasher()
        return digests[key](prev_hash, item_id)

    prev = campaign.chain_head or GENESIS_HASH
    if connection.vendor == "postgresql":
        # COPY in text format. Everything but the item id and the two hashes is the same for every row of one
        # variant, so that part of the line is escaped once; each row then costs one hash and one f-string.
        def prefix_of(key: tuple) -> str:
            if key not in prefixes:
                t = template_of(key)
                shared = [
                    t.organization_id, t.campaign_id, t.decision, t.reason, t.comment, t.actor_id, t.actor_email,
                    t.actor_role, t.kind, t.bulk_id, t.created_at.isoformat(), t.expires_on, t.stage,
                    t.on_behalf_of_email,
                ]
                prefixes[key] = "\t".join(_copy_text(value) for value in shared)
            return prefixes[key]

        columns = (
            "organization_id, campaign_id, decision, reason, comment, actor_id, actor_email, actor_role, kind, "
            "bulk_id, created_at, expires_on, stage, on_behalf_of_email, item_id, prev_hash, hash"
        )
        single = None if (stage_of or behalf) else variant(0)  # the common case: one variant for the whole write
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY {DecisionEvent._meta.db_table} ({columns}) FROM STDIN") as copy:
                lines: list[str] = []
                for item_id in item_ids:
                    key = single or variant(item_id)
                    current = digest(prev, key, item_id)
                    lines.append(f"{prefix_of(key)}\t{item_id}\t{prev}\t{current}\n")
                    prev = current
                    if len(lines) >= EVENT_BATCH_SIZE:
                        copy.write("".join(lines))
                        lines = []
                if lines:
                    copy.write("".join(lines))
    else:
        batch: list[DecisionEvent] = []
        for item_id in item_ids:
            key = variant(item_id)
            current = digest(prev, key, item_id)
            batch.append(
                DecisionEvent(
                    stage=key[0],
                    on_behalf_of_email=key[1],
                    organization_id=template.organization_id,
                    campaign_id=template.campaign_id,
                    item_id=item_id,
                    decision=template.decision,
                    reason=template.reason,
                    comment=template.comment,
                    actor_id=template.actor_id,
                    actor_email=template.actor_email,
                    actor_role=template.actor_role,
                    kind=template.kind,
                    bulk_id=template.bulk_id,
                    created_at=template.created_at,
                    expires_on=template.expires_on,
                    prev_hash=prev,
                    hash=current,
                )
            )
            prev = current
            if len(batch) >= EVENT_BATCH_SIZE:
                DecisionEvent.objects.bulk_create(batch)
                batch = []
        if batch:
            DecisionEvent.objects.bulk_create(batch)
    if item_ids:
        Campaign.objects.filter(pk=campaign.pk).update(chain_head=prev)
        campaign.chain_head = prev
    return prev


def _item_update_values(template: _EventTemplate) -> dict:
    return {
        "decision": template.decision,
        "decision_reason": template.reason,
        "decision_comment": template.comment,
        "decided_by_id": template.actor_id,
        "decided_by_email": template.actor_email,
        "decided_by_role": template.actor_role,
        "decided_at": template.created_at,
        "exception_expires_on": template.expires_on,
        "decided_on_behalf_of_email": template.on_behalf_of_email,
    }


@dataclass
class _Updated:
    ids: list[int]  # every updated item, in id order (the order of their history rows in the chain)
    remediation_ids: list[int]  # those whose ticket or remediation state may have to follow the decision
    stage_of: dict[int, int] = dataclasses.field(default_factory=dict)  # each item's stage
    behalf: dict[int, str] = dataclasses.field(default_factory=dict)  # items decided by a delegate: whose review


# "On behalf of": a member deciding an item that reached them by delegation decides it for its delegator.
def behalf_for(item: ReviewItem, actor: Reviewer) -> str:
    return item.delegated_from_email if is_assigned(item, actor) else ""


def _update_items(items: QuerySet, template: _EventTemplate) -> _Updated:
    """Applies the decision to every item of the queryset in one statement."""
    values = _item_update_values(template)
    values.pop("decided_on_behalf_of_email")  # per item: the delegator of an item assigned to the actor
    revoke = template.decision == Decision.REVOKE
    if connection.vendor == "postgresql":
        # One UPDATE ... RETURNING instead of reading the ids first: the statement both locks and changes the
        # rows, so nothing can slip in between. Filters on the item table alone are inlined as the UPDATE's own
        # WHERE (the same plan as a hand-written UPDATE); anything else stays a subquery.
        table = ReviewItem._meta.db_table
        query = items.query
        try:
            if set(query.alias_map) == {table} and not query.extra:
                where, where_params = query.get_compiler(connection=connection).compile(query.where)
            else:
                subquery, sub_params = items.values("id").query.sql_with_params()
                where, where_params = f"id IN ({subquery})", sub_params
        except EmptyResultSet:
            return _Updated(ids=[], remediation_ids=[], behalf={})
        sets = ", ".join(f"{ReviewItem._meta.get_field(name).column} = %s" for name in values)
        if template.assigned_column:
            behalf_sql = f"CASE WHEN {template.assigned_column} = %s THEN delegated_from_email ELSE '' END"
            behalf_params = [template.assigned_id]
        else:
            behalf_sql, behalf_params = "''", []
        sql = (
            f"UPDATE {table} SET {sets}, decided_on_behalf_of_email = {behalf_sql}, version = version + 1 "
            f"WHERE {where} RETURNING id, remediation_status <> '' OR ticket_status <> '', stage, "
            "decided_on_behalf_of_email"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*values.values(), *behalf_params, *where_params])
            rows = cursor.fetchall()
    else:
        rows = []
        for pk, remediation, ticket, stage, reviewer_id, guest_id, delegated_from in items.values_list(
            "id", "remediation_status", "ticket_status", "stage", "reviewer_id", "guest_id", "delegated_from_email"
        ):
            own = {"reviewer_id": reviewer_id, "guest_id": guest_id}.get(template.assigned_column)
            rows.append((pk, bool(remediation or ticket), stage,
                         delegated_from if own is not None and own == template.assigned_id else ""))
        for behalf in {b for _, _, _, b in rows}:
            ids = [pk for pk, _, _, b in rows if b == behalf]
            for start in range(0, len(ids), EVENT_BATCH_SIZE):
                chunk = ids[start : start + EVENT_BATCH_SIZE]
                ReviewItem.objects.filter(pk__in=chunk).update(
                    **values, decided_on_behalf_of_email=behalf, version=F("version") + 1
                )
    rows.sort()
    return _Updated(
        ids=[pk for pk, *_ in rows],
        # A revoke may need a ticket for every item; any other decision only concerns items that already have
        # a ticket or a pending removal (to withdraw them).
        remediation_ids=[pk for pk, relevant, *_ in rows if revoke or relevant],
        stage_of={pk: stage for pk, _, stage, _ in rows},
        behalf={pk: b for pk, _, _, b in rows if b},
    )


def _publish_decisions(
    campaign: Campaign, decision: str, item_ids: list[int], stage_of: dict[int, int] | None = None, *,
    all_final: bool = False,
) -> None:
    """In the decision's transaction: revokes ask for removal; another decision on a revoked item withdraws
    the removal. Item ids travel in chunks so no event row grows without bound. In a multi-stage campaign only
    a final revoke asks for removal: one that moves the item to its next stage is not the last word."""
    if decision == Decision.REVOKE and campaign.is_multi_stage and item_ids and not all_final:
        from .stages import final_item_ids

        stage_of = stage_of or dict(ReviewItem.objects.filter(pk__in=item_ids).values_list("pk", "stage"))
        final = set(final_item_ids(campaign=campaign, decision=decision, stage_of={i: stage_of.get(i) for i in item_ids}))
        item_ids = [i for i in item_ids if i in final]
    if not item_ids:
        return
    event_type = DecisionsRecorded if decision == Decision.REVOKE else ItemDecisionsWithdrawn
    publish(
        *(
            event_type(
                organization_id=campaign.organization_id,
                campaign_id=str(campaign.pk),
                decision=decision,
                item_ids=list(item_ids[start : start + EVENT_BATCH_SIZE]),
            )
            for start in range(0, len(item_ids), EVENT_BATCH_SIZE)
        )
    )


# --------------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------------


def review_item_decide(
    *,
    item: ReviewItem,
    actor: Membership,
    decision: str,
    reason: str = "",
    comment: str = "",
    expires_on: dt.date | None = None,
    request=None,
) -> ReviewItem:
    """Records one decision on one item (a changed decision is a new history row) and returns the item.
    An exception carries ``expires_on`` (the organization's default when not given)."""
    _require_can_decide(actor)
    assert_same_organization(item, actor)
    with transaction.atomic():
        campaign, decision, reason, comment = _lock_for_decision(
            item.campaign, decision=decision, reason=reason, comment=comment
        )
        # Locked after the campaign, re-read so a concurrent writer's change is seen and never overwritten.
        locked = ReviewItem.objects.select_for_update().get(pk=item.pk)
        if not membership_can_decide_any(actor) and not is_assigned(locked, actor):
            raise PermissionDenied("This item is assigned to another reviewer.")
        if is_own_access(locked, actor):
            raise PermissionDenied(self_review_message(locked))
        earlier = decided_earlier_stage(locked, actor)
        if earlier:
            raise PermissionDenied(
                f"You decided this item at stage {earlier}; nobody decides the same item in two stages. An admin "
                "can reassign it."
            )
        if locked.signed_off_at is not None:
            raise ValidationError(
                f"The decision on this item was signed off on {locked.signed_off_at:%Y-%m-%d %H:%M} UTC and can "
                "no longer be changed."
            )
        template = _EventTemplate.by_member(
            campaign=campaign,
            actor=actor,
            decision=decision,
            reason=reason,
            comment=comment,
            kind=KIND_SINGLE,
            expires_on=exception_expiry_clean(
                organization=actor.organization, decision=decision, expires_on=expires_on
            ),
            stage=locked.stage if campaign.is_multi_stage else None,
        )
        template = replace(template, on_behalf_of_email=behalf_for(locked, actor))
        previous = locked.decision
        for field, value in _item_update_values(template).items():
            setattr(locked, field, value)
        locked.version += 1
        locked.save(update_fields=[*_item_update_values(template), "version"])
        _append_events(campaign=campaign, template=template, item_ids=[locked.pk],
                       behalf={locked.pk: template.on_behalf_of_email} if template.on_behalf_of_email else None)
        audit_record(
            action="campaign_decision",
            organization_id=campaign.organization_id,
            **_audit_actor(actor),
            request=request,
            target=locked,
            details={
                "campaign": str(campaign.pk),
                "item": locked.pk,
                "decision": decision,
                "reason": reason,
                "previous_decision": previous,
                **({"expires_on": template.expires_on.isoformat()} if template.expires_on else {}),
                **({"on_behalf_of": template.on_behalf_of_email} if template.on_behalf_of_email else {}),
            },
        )
        if decision == Decision.REVOKE or locked.remediation_status or locked.ticket_status:
            _publish_decisions(campaign, decision, [locked.pk], {locked.pk: locked.stage})
    locked.campaign = campaign
    return locked


# Why a bulk decision leaves an item out, as reported to the caller.
SKIP_SELF_REVIEW = "self_review"
SKIP_RECOMMENDED_REVOKE = "recommended_revoke"
SKIP_EARLIER_STAGE = "earlier_stage"
# The finding behind a revoke recommendation, in the precedence the snapshot uses for its reason.
REVOKE_CAUSES = ("terminated", "orphaned", "dormant", "never_used")


@dataclass(frozen=True)
class BulkBreakdown:
    """What a bulk decision over a selection would do: how many items it decides and which it leaves out."""

    matching: int  # undecided-or-decided items of the selection the actor may decide, not signed off
    self_review: int  # of those, the actor's own access (always left out)
    recommended_revoke: int  # of the rest, recommended for revoke (left out of an approval unless included)
    revoke_causes: dict[str, int]  # recommended_revoke by cause (terminated, orphaned, dormant, never_used, other)
    guarded: bool  # whether recommended-revoke items are left out
    earlier_stage: int = 0  # multi-stage: items the actor decided in an earlier stage (always left out)

    @property
    def to_decide(self) -> int:
        return (self.matching - self.self_review - self.earlier_stage
                - (self.recommended_revoke if self.guarded else 0))

    @property
    def skipped(self) -> dict[str, int]:
        skipped = {SKIP_SELF_REVIEW: self.self_review, SKIP_EARLIER_STAGE: self.earlier_stage}
        if self.guarded:
            skipped[SKIP_RECOMMENDED_REVOKE] = self.recommended_revoke
        return {cause: n for cause, n in skipped.items() if n}

    @property
    def causes_text(self) -> str:
        return ", ".join(f"{cause.replace('_', ' ')} {n}" for cause, n in self.revoke_causes.items() if n)


@dataclass(frozen=True)
class BulkResult:
    updated: int
    skipped: dict[str, int]
    recommended_revoke_causes: dict[str, int]


def guards_recommended_revoke(decision: str, include_recommended_revoke: bool) -> bool:
    return decision == Decision.APPROVE and not include_recommended_revoke


def _decidable(campaign: Campaign, actor: Membership, items: QuerySet) -> QuerySet:
    items = items.filter(campaign_id=campaign.pk, signed_off_at__isnull=True)
    if not membership_can_decide_any(actor):
        items = items.filter(assigned_q(actor))
    return items


def bulk_decision_breakdown(
    *, campaign: Campaign, actor: Membership, items: QuerySet, decision: str, include_recommended_revoke: bool = False
) -> BulkBreakdown:
    """Counts, in one query, what ``decisions_bulk_apply`` would decide and leave out of ``items``."""
    own = _own_access_q(actor)
    earlier_q = _earlier_stage_q(campaign, actor)
    extra = {}
    if earlier_q is not None:
        extra["earlier_stage"] = Count("id", filter=earlier_q & ~own)
        own = own | earlier_q  # left out like one's own access; counted apart
    revoke = Q(recommendation=Decision.REVOKE) & ~own
    earlier = Q()
    cause_counts = {}
    for cause in REVOKE_CAUSES:
        flag = Q(**{f"is_{cause}": True})
        cause_counts[cause] = Count("id", filter=revoke & flag & ~earlier) if earlier else Count("id", filter=revoke & flag)
        earlier = earlier | flag
    cause_counts["other"] = Count("id", filter=revoke & ~earlier)
    row = _decidable(campaign, actor, items).aggregate(
        matching=Count("id"), self_review=Count("id", filter=_own_access_q(actor)),
        recommended_revoke=Count("id", filter=revoke),
        **{f"cause_{k}": v for k, v in cause_counts.items()}, **extra,
    )
    return BulkBreakdown(
        earlier_stage=row.get("earlier_stage", 0),
        matching=row["matching"],
        self_review=row["self_review"],
        recommended_revoke=row["recommended_revoke"],
        revoke_causes={cause: row[f"cause_{cause}"] for cause in cause_counts},
        guarded=guards_recommended_revoke(decision, include_recommended_revoke),
    )


def decisions_bulk_apply(
    *,
    campaign: Campaign,
    actor: Membership,
    items: QuerySet,
    decision: str,
    reason: str = "",
    comment: str = "",
    include_recommended_revoke: bool = False,
    expires_on: dt.date | None = None,
    scope_label: str = "selected",
    expected_count: int | None = None,
    request=None,
) -> BulkResult:
    """Applies one decision to every item of ``items`` that the actor may decide and that is not signed off,
    in one transaction: one UPDATE, one history row per item, one audit event with the count.

    ``items`` is the caller's selection (checked ids, or every item matching the filters in view); it is
    narrowed here to the campaign and, for reviewers, to their own items. The actor's own access is always
    left out (no self-review), and an approval leaves out items recommended for revoke unless
    ``include_recommended_revoke``; the result reports both by cause. With ``expected_count`` (the number a
    confirmation showed), a different number of items to decide rolls everything back with an error, so
    nobody decides more items than they agreed to."""
    _require_can_decide(actor)
    assert_same_organization(campaign, actor)
    with transaction.atomic():
        campaign, decision, reason, comment = _lock_for_decision(
            campaign, decision=decision, reason=reason, comment=comment
        )
        breakdown = bulk_decision_breakdown(
            campaign=campaign, actor=actor, items=items, decision=decision,
            include_recommended_revoke=include_recommended_revoke,
        )
        items = _decidable(campaign, actor, items).exclude(_own_access_q(actor))
        earlier_q = _earlier_stage_q(campaign, actor)
        if earlier_q is not None:
            items = items.exclude(earlier_q)
        if breakdown.guarded:
            items = items.exclude(recommendation=Decision.REVOKE)
        template = _EventTemplate.by_member(
            campaign=campaign,
            actor=actor,
            decision=decision,
            reason=reason,
            comment=comment,
            kind=KIND_BULK,
            bulk_id=uuid.uuid4(),
            expires_on=exception_expiry_clean(
                organization=actor.organization, decision=decision, expires_on=expires_on
            ),
        )
        updated = _update_items(items, template)
        ids = updated.ids
        if expected_count is not None and len(ids) != expected_count:
            raise ValidationError(
                f"The view now matches {len(ids)} items you can decide, not the {expected_count} you "
                "confirmed; review the count and confirm again."
            )
        result = BulkResult(
            updated=len(ids),
            skipped=breakdown.skipped,
            recommended_revoke_causes=(
                {cause: n for cause, n in breakdown.revoke_causes.items() if n} if breakdown.guarded else {}
            ),
        )
        if not ids:
            return result
        _append_events(campaign=campaign, template=template, item_ids=ids,
                       stage_of=updated.stage_of if campaign.is_multi_stage else None, behalf=updated.behalf)
        audit_record(
            action="campaign_bulk_decision",
            organization_id=campaign.organization_id,
            **_audit_actor(actor),
            request=request,
            target=campaign,
            details={
                "campaign": str(campaign.pk),
                "decision": decision,
                "reason": reason,
                "count": len(ids),
                "scope": scope_label,
                "bulk_id": str(template.bulk_id),
                "skipped": result.skipped,
                "included_recommended_revoke": decision == Decision.APPROVE and include_recommended_revoke
                and breakdown.recommended_revoke > 0,
                **({"on_behalf_of": sorted(set(updated.behalf.values()))} if updated.behalf else {}),
                **({"expires_on": template.expires_on.isoformat()} if template.expires_on else {}),
            },
        )
        _publish_decisions(campaign, decision, updated.remediation_ids, updated.stage_of)
    return result


def decisions_apply_default_outcome(*, campaign: Campaign, actor: User | Membership | None = None) -> int:
    """When a campaign is closed: applies its default outcome to every undecided item as a system decision.

    ``none`` leaves items undecided. ``recommendation`` applies each item's own recommendation. Returns the
    number of items decided."""
    outcome = campaign.default_outcome
    if outcome == DefaultOutcome.NONE:
        return 0
    user = actor.user if isinstance(actor, Membership) else actor
    closed_by = f" closed by {user.email}" if user is not None else ""
    decided: list[int] = []
    with transaction.atomic():
        campaign = _lock_campaign(campaign)
        pending = ReviewItem.objects.filter(campaign_id=campaign.pk, decision="")
        if outcome == DefaultOutcome.RECOMMENDATION:
            groups = [(d, pending.filter(recommendation=d)) for d in Decision.values]
        else:
            groups = [(outcome, pending)]
        now = timezone.now()
        for decision, items in groups:
            reason = (
                f"Default outcome of the campaign{closed_by}: the item was still undecided, so the recommendation "
                f"({decision}) was applied."
                if outcome == DefaultOutcome.RECOMMENDATION
                else f"Default outcome of the campaign{closed_by}: the item was still undecided."
            )
            template = _EventTemplate(
                organization_id=campaign.organization_id,
                campaign_id=campaign.pk,
                decision=decision,
                reason=reason,
                comment="",
                actor_id=None,
                actor_email=SYSTEM_ACTOR,
                actor_role=SYSTEM_ACTOR,
                kind=KIND_SYSTEM,
                created_at=now,
                bulk_id=uuid.uuid4(),
            )
            updated = _update_items(items, template)
            if updated.ids:
                _append_events(campaign=campaign, template=template, item_ids=updated.ids,
                               stage_of=updated.stage_of if campaign.is_multi_stage else None)
                decided.extend(updated.ids)
                # The campaign is closing: every decision now is the item's last.
                _publish_decisions(campaign, decision, updated.remediation_ids, all_final=True)
    return len(decided)


# --------------------------------------------------------------------------------------------------
# Sign-off
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewerProgress:
    total: int
    decided: int
    signed_off: int

    @property
    def pending(self) -> int:
        return self.total - self.decided

    @property
    def can_sign_off(self) -> bool:
        return self.total > 0 and self.pending == 0 and self.signed_off < self.total

    @property
    def is_signed_off(self) -> bool:
        return self.total > 0 and self.signed_off == self.total


def reviewer_progress(*, campaign: Campaign, membership: Reviewer) -> ReviewerProgress:
    row = ReviewItem.objects.filter(assigned_q(membership), campaign_id=campaign.pk).aggregate(
        total=Count("id"),
        decided=Count("id", filter=~Q(decision="")),
        signed_off=Count("id", filter=Q(signed_off_at__isnull=False)),
    )
    return ReviewerProgress(total=row["total"], decided=row["decided"], signed_off=row["signed_off"])


def review_sign_off(*, campaign: Campaign, actor: Membership, request=None) -> int:
    """The reviewer confirms their decisions: every item assigned to them must be decided. Their items'
    decisions then lock. Returns the number of items signed off."""
    _require_can_decide(actor)
    assert_same_organization(campaign, actor)
    with transaction.atomic():
        campaign = _lock_campaign(campaign)
        _require_decidable_campaign(campaign)
        progress = reviewer_progress(campaign=campaign, membership=actor)
        if progress.total == 0:
            raise ValidationError("You have no items to review in this campaign, so there is nothing to sign off.")
        if progress.pending:
            raise ValidationError(
                f"{progress.pending} of your {progress.total} items are still undecided; decide them all before "
                "signing off."
            )
        if progress.is_signed_off:
            raise ValidationError("You have already signed off this campaign.")
        now = timezone.now()
        mine = ReviewItem.objects.filter(assigned_q(actor), campaign_id=campaign.pk, signed_off_at__isnull=True)
        # A guest's revokes get their tickets through the decision hook (it opens signed-off revokes when the
        # organization's trigger is sign-off); a member's through the sign-off hook below.
        guest_revokes = (
            list(mine.filter(decision=Decision.REVOKE).values_list("pk", flat=True))
            if isinstance(actor, GuestReviewer) else []
        )
        signed_ids = list(mine.values_list("pk", flat=True)) if campaign.is_multi_stage else []
        count = mine.update(signed_off_at=now)
        audit_record(
            action="campaign_signed_off",
            organization_id=campaign.organization_id,
            **_audit_actor(actor),
            request=request,
            target=campaign,
            details={"campaign": str(campaign.pk), "reviewer": actor_email(actor), "items": progress.total,
                     **({"role": actor.role} if isinstance(actor, GuestReviewer) else {})},
        )
        # A guest's revokes ask for their tickets now (the sign-off trigger opens signed-off revokes); the
        # sign-off event then names no member (0), so per-member sign-off work finds nothing of theirs.
        _publish_decisions(campaign, Decision.REVOKE, guest_revokes)
        if signed_ids:
            # Decisions that move an item on take it to its next stage now; the others are final.
            from .stages import stage_items_advance

            stage_items_advance(campaign=campaign, item_ids=signed_ids, by_email=actor_email(actor),
                                trigger=f"sign-off by {actor_email(actor)}")
        publish(
            ReviewerSignedOff(
                organization_id=campaign.organization_id, campaign_id=str(campaign.pk),
                reviewer_id=0 if isinstance(actor, GuestReviewer) else actor.pk,
            )
        )
    return count

