"""Roles and what they may do: the one table used by pages, API and templates."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    SUPER_ADMIN = "super_admin"
    ADMIN = "admin"
    SECURITY_ANALYST = "security_analyst"
    AUDITOR = "auditor"
    VIEWER = "viewer"
    REVIEWER = "reviewer"

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]


ROLE_LABELS = {
    Role.SUPER_ADMIN: "Super admin",
    Role.ADMIN: "Admin",
    Role.SECURITY_ANALYST: "Security analyst",
    Role.AUDITOR: "Auditor",
    Role.VIEWER: "Viewer",
    Role.REVIEWER: "Reviewer",
}
ROLE_CHOICES = [(r.value, ROLE_LABELS[r]) for r in Role]


class Perm(StrEnum):
    # Reviewers hold VIEW_CAMPAIGNS but see only campaigns with items assigned to them; everyone else also
    # holds VIEW_ALL_CAMPAIGNS.
    VIEW_CAMPAIGNS = "view_campaigns"
    VIEW_ALL_CAMPAIGNS = "view_all_campaigns"
    MANAGE_CAMPAIGNS = "manage_campaigns"  # create / cancel / close
    OVERRIDE_FRESHNESS = "override_freshness"  # launch a campaign on data older than the freshness limit
    DECIDE_ANY = "decide_any"
    DECIDE_ASSIGNED = "decide_assigned"
    EXPORT_EVIDENCE = "export_evidence"
    VIEW_INVENTORY = "view_inventory"
    MANAGE_INVENTORY = "manage_inventory"  # inventory, imports, connectors
    MANAGE_SETTINGS = "manage_settings"  # members, ITSM and notification settings
    MANAGE_ORGANIZATION = "manage_organization"  # plan, delete, super admins
    VIEW_AUDIT_LOG = "view_audit_log"
    VIEW_REMEDIATION = "view_remediation"
    CONFIRM_REMOVAL = "confirm_removal"  # as the item's remediation owner
    CONFIRM_ANY_REMOVAL = "confirm_any_removal"  # whoever the remediation owner is
    VIEW_DECISION_QUALITY = "view_decision_quality"
    REQUEST_ACCESS = "request_access"  # for oneself (and others where the organization allows it)
    VIEW_ALL_ACCESS_REQUESTS = "view_all_access_requests"


_ALL = set(Role)
_STAFF = {Role.SUPER_ADMIN, Role.ADMIN, Role.SECURITY_ANALYST}

PERMISSIONS: dict[Perm, set[Role]] = {
    Perm.VIEW_CAMPAIGNS: _ALL,
    Perm.VIEW_ALL_CAMPAIGNS: _ALL - {Role.REVIEWER},
    Perm.MANAGE_CAMPAIGNS: _STAFF,
    Perm.OVERRIDE_FRESHNESS: {Role.SUPER_ADMIN, Role.ADMIN},
    Perm.DECIDE_ANY: _STAFF,
    Perm.DECIDE_ASSIGNED: _STAFF | {Role.REVIEWER},
    Perm.EXPORT_EVIDENCE: _STAFF | {Role.AUDITOR},
    Perm.VIEW_INVENTORY: _ALL - {Role.REVIEWER},
    Perm.MANAGE_INVENTORY: _STAFF,
    Perm.MANAGE_SETTINGS: {Role.SUPER_ADMIN, Role.ADMIN},
    Perm.MANAGE_ORGANIZATION: {Role.SUPER_ADMIN},
    Perm.VIEW_AUDIT_LOG: {Role.SUPER_ADMIN, Role.ADMIN, Role.AUDITOR},
    # Remediation owners (any role) see their own applications' queue; staff see all of it.
    Perm.VIEW_REMEDIATION: _ALL,
    # Auditors and viewers stay read-only: whoever audits a removal never confirms it.
    Perm.CONFIRM_REMOVAL: _STAFF | {Role.REVIEWER},
    Perm.CONFIRM_ANY_REMOVAL: {Role.SUPER_ADMIN, Role.ADMIN},
    # Reviewers do not see how their peers (or they themselves) are rated.
    Perm.VIEW_DECISION_QUALITY: _STAFF | {Role.AUDITOR},
    Perm.REQUEST_ACCESS: _ALL,
    Perm.VIEW_ALL_ACCESS_REQUESTS: _STAFF | {Role.AUDITOR},
}

# Roles an admin may grant; only a super admin may grant super_admin.
GRANTABLE_BY: dict[Role, set[Role]] = {
    Role.SUPER_ADMIN: set(Role),
    Role.ADMIN: set(Role) - {Role.SUPER_ADMIN},
}


def has_perm(role: str | None, perm: Perm | str) -> bool:
    if role is None:
        return False
    try:
        return Role(role) in PERMISSIONS[Perm(perm)]
    except ValueError:
        return False


def perms_for(role: str | None) -> dict[str, bool]:
    """All permission flags for a role, for templates: {% if perms_org.manage_campaigns %}."""
    return {p.value: has_perm(role, p) for p in Perm}
