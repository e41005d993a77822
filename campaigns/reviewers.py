"""Reviewer resolution for one identity's access to one application, for areas that ask one person at a time
(access request approvals). The rules are those the campaign snapshot applies in SQL to every row
(``launch.snapshot_sql``): the strategy names a candidate (the application owner, the identity's manager
or a named member); a member who may review gets it, a candidate who is not a member reviews as a guest when
the organization allows guest reviewers, and a missing candidate or self-review goes to the fallback. Standing
delegations are followed to the end of the chain, as at launch."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from entitlements.models import Application, Identity
from thalian.models import Membership, Organization

from .delegation import delegate_final
from .models import ReviewerStrategy
from .reassignment import ReassignError
from .selectors import REVIEWER_ROLES, membership_by_email


@dataclass(frozen=True)
class ResolvedReviewer:
    member: Membership | None  # a member who decides in Thalian
    guest_email: str  # a person who is not a member and decides through a personal link
    note: str  # why this person, when it is not simply the candidate

    @property
    def email(self) -> str:
        return self.member.user.email if self.member is not None else self.guest_email

    @property
    def is_unassigned(self) -> bool:
        return self.member is None and not self.guest_email


STRATEGY_LABELS = {
    ReviewerStrategy.APPLICATION_OWNER: "Application owner",
    ReviewerStrategy.MANAGER: "Manager",
    ReviewerStrategy.MEMBERS: "Named reviewer",
}


def reviewer_candidate(*, strategy: str, identity: Identity, application: Application, named: list[str]) -> str:
    if strategy == ReviewerStrategy.APPLICATION_OWNER:
        return (application.owner_email or "").strip().lower()
    if strategy == ReviewerStrategy.MANAGER:
        manager = identity.manager
        return (manager.email if manager is not None else "").strip().lower()
    return (named[identity.pk % len(named)] if named else "").strip().lower()


def reviewer_resolve(
    *,
    organization: Organization,
    strategy: str,
    identity: Identity,
    application: Application,
    named: list[str] | None = None,
    fallback: Membership | None,
    excluded: set[str] = frozenset(),
    day: dt.date | None = None,
) -> ResolvedReviewer:
    """Who reviews ``identity``'s access to ``application``. ``excluded`` are e-mails that may not review it
    besides the identity itself (whoever asked for the access, earlier approvers of the same request)."""
    day = day or timezone.localdate()
    refused = {identity.email.lower(), *(e.lower() for e in excluded)}
    candidate = reviewer_candidate(strategy=strategy, identity=identity, application=application, named=named or [])
    who = STRATEGY_LABELS.get(strategy, "Reviewer")
    why = ""
    if not candidate:
        why = {
            ReviewerStrategy.APPLICATION_OWNER: "The application has no owner",
            ReviewerStrategy.MANAGER: "The identity has no manager in the inventory",
        }.get(strategy, "No reviewer is named for this application")
    elif candidate in refused:
        why = f"Self-review avoided: {candidate} is the identity or may not decide this"
    else:
        member = membership_by_email(organization=organization, email=candidate)
        if member is not None and member.user.is_active and member.role in REVIEWER_ROLES:
            final = _delegated(member, day)
            if final.user.email.lower() not in refused:
                note = "" if final.pk == member.pk else f"Standing delegation of {member.user.email}"
                return ResolvedReviewer(member=final, guest_email="", note=note)
            why = f"Self-review avoided: the delegate {final.user.email} may not decide this"
        elif member is None and organization.allows_guest_reviewers:
            return ResolvedReviewer(member=None, guest_email=candidate,
                                    note=f"{who} {candidate} is not a member: guest reviewer")
        else:
            why = f"{who} {candidate} is not a member who can review"
    if fallback is not None:
        final = _delegated(fallback, day)
        if final.user.email.lower() not in refused:
            return ResolvedReviewer(member=final, guest_email="", note=f"{why}: assigned to the fallback reviewer")
    return ResolvedReviewer(
        member=None, guest_email="",
        note=f"{why}; the fallback reviewer may not decide it either, so it waits until an admin reassigns it",
    )


def _delegated(member: Membership, day: dt.date) -> Membership:
    try:
        final = delegate_final(member=member, day=day)
    except ReassignError:
        return member  # a loop made after the fact: the member keeps it
    return final if final.role in REVIEWER_ROLES else member
