"""Realistic demo inventory, loaded through the same import service as customer files.

The data is generated from a seed per organization, so loading it again is a no-op (every row
comes back unchanged). `scale` multiplies people and access for load tests.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from datetime import timedelta

from django.utils import timezone

from thalian.models import Organization
from thalian.tenancy import scope

from .services import inventory_import

FIRST = (
    "Ada Alan Amir Ana Ben Bianca Carla Chen Chloe Dan Dara Eli Emma Eva Farah Felix Gia Grace Hana Hugo Ian Ines "
    "Ivan Jade Jon Kai Kara Leo Lena Liam Lucia Maya Mei Milo Nadia Nora Omar Owen Pia Priya Quinn Raj Rosa Sam "
    "Sara Tara Theo Uma Vera Wes Yara Yusuf Zoe"
).split()
LAST = (
    "Abbott Baker Brooks Castro Chen Cohen Diaz Evans Fischer Garcia Gupta Hall Hansen Ito Jensen Kaur Khan Kim "
    "Lopez Martin Meyer Moreau Murphy Nakamura Novak Okafor Olsen Patel Perez Quinn Reed Rossi Santos Schmidt Silva "
    "Singh Smith Tanaka Taylor Weber Wilson Wong Young Zhang"
).split()
DEPARTMENTS = {
    "Engineering": 0.30,
    "Sales": 0.16,
    "Customer Success": 0.10,
    "Marketing": 0.08,
    "Finance": 0.07,
    "People": 0.05,
    "IT": 0.06,
    "Security": 0.04,
    "Legal": 0.03,
    "Product": 0.08,
    "Operations": 0.03,
}
# name, category, sanctioned, departments that use it (empty: everyone), roles (privileged first)
APPLICATIONS = [
    ("Google Workspace", "Productivity", True, (), ("Super Admin", "User")),
    ("Slack", "Communication", True, (), ("Workspace Owner", "Admin", "Member")),
    ("Zoom", "Communication", True, (), ("Account Owner", "Licensed", "Basic")),
    ("Okta", "Identity", True, ("IT", "Security"), ("Super Admin", "Org Admin", "Read Only Admin")),
    ("1Password", "Security", True, (), ("Owner", "Administrator", "Member")),
    ("GitHub", "Engineering", True, ("Engineering", "Security", "Product"), ("Owner", "Maintainer", "Member")),
    ("AWS Production", "Cloud", True, ("Engineering", "Security", "IT"), ("AdministratorAccess", "PowerUser", "ReadOnly")),
    ("AWS Staging", "Cloud", True, ("Engineering",), ("AdministratorAccess", "Developer", "ReadOnly")),
    ("Datadog", "Engineering", True, ("Engineering", "Security"), ("Admin", "Standard", "Read Only")),
    ("PagerDuty", "Engineering", True, ("Engineering", "IT"), ("Account Owner", "Responder", "Observer")),
    ("Jira", "Engineering", True, ("Engineering", "Product", "IT", "Security"), ("Site Admin", "Project Admin", "User")),
    ("Confluence", "Productivity", True, (), ("Site Admin", "Space Admin", "User")),
    ("Figma", "Design", True, ("Product", "Marketing", "Engineering"), ("Org Admin", "Editor", "Viewer")),
    ("Salesforce", "CRM", True, ("Sales", "Customer Success", "Marketing"), ("System Administrator", "Sales Manager", "Sales User")),
    ("HubSpot", "Marketing", True, ("Marketing", "Sales"), ("Super Admin", "Marketer", "Viewer")),
    ("Gong", "Sales", True, ("Sales",), ("Admin", "Recorder", "Viewer")),
    ("Outreach", "Sales", True, ("Sales",), ("Admin", "Rep")),
    ("Zendesk", "Support", True, ("Customer Success",), ("Admin", "Agent", "Light Agent")),
    ("Intercom", "Support", True, ("Customer Success", "Marketing"), ("Owner", "Teammate")),
    ("Gainsight", "Customer Success", True, ("Customer Success",), ("Admin", "CSM")),
    ("NetSuite", "Finance", True, ("Finance",), ("Administrator", "Accountant", "Approver")),
    ("Expensify", "Finance", True, (), ("Domain Admin", "Approver", "Employee")),
    ("Ramp", "Finance", True, ("Finance", "Operations"), ("Admin", "Bookkeeper", "Cardholder")),
    ("Carta", "Finance", True, ("Finance", "Legal"), ("Company Admin", "Viewer")),
    ("Workday", "HR", True, ("People", "Finance"), ("Security Administrator", "HR Partner", "Employee")),
    ("Greenhouse", "HR", True, ("People",), ("Site Admin", "Recruiter", "Interviewer")),
    ("Lattice", "HR", True, (), ("Super Admin", "Manager", "Employee")),
    ("DocuSign", "Legal", True, ("Legal", "Sales", "Finance"), ("Account Admin", "Sender", "Signer")),
    ("Ironclad", "Legal", True, ("Legal",), ("Admin", "Legal User")),
    ("Snowflake", "Data", True, ("Engineering", "Finance", "Product"), ("ACCOUNTADMIN", "SYSADMIN", "ANALYST")),
    ("Looker", "Data", True, ("Product", "Finance", "Sales", "Marketing"), ("Admin", "Developer", "Viewer")),
    ("Notion", "Productivity", True, (), ("Workspace Owner", "Member", "Guest")),
    ("Miro", "Productivity", True, ("Product", "Marketing", "Engineering"), ("Company Admin", "Member")),
    ("Dropbox", "Storage", False, ("Marketing", "Sales"), ("Team Admin", "Member")),
    ("Trello", "Productivity", False, ("Marketing", "Operations"), ("Admin", "Normal")),
    ("Canva", "Design", False, ("Marketing",), ("Owner", "Designer")),
    ("ChatGPT Team", "AI", False, (), ("Owner", "Member")),
    ("CrowdStrike", "Security", True, ("Security", "IT"), ("Falcon Administrator", "Analyst")),
    ("Vanta", "Security", True, ("Security", "Legal", "IT"), ("Admin", "Editor", "Viewer")),
    ("Jamf", "IT", True, ("IT",), ("Administrator", "Auditor")),
]


def _csv(header: str, rows: Iterator[str]) -> io.BytesIO:
    return io.BytesIO((header + "\n" + "".join(r + "\n" for r in rows)).encode())


def demo_files(organization: Organization, *, scale: int = 1) -> dict[str, io.BytesIO]:
    """The three demo CSV files of an organization, deterministic for its slug and scale."""
    rng = random.Random(f"thalian-demo-{organization.slug}-{scale}")
    domain = f"{organization.slug}.example"
    people = 2000 * scale
    identities: list[dict] = []
    used: set[str] = set()

    def email_for(first: str, last: str) -> str:
        base = f"{first}.{last}".lower()
        email, n = f"{base}@{domain}", 1
        while email in used:
            n += 1
            email = f"{base}{n}@{domain}"
        used.add(email)
        return email

    ceo = {"email": email_for("Morgan", "Reyes"), "name": "Morgan Reyes", "department": "Executive",
           "manager": "", "kind": "human", "status": "active", "title": "Chief Executive Officer"}
    identities.append(ceo)
    heads: dict[str, list[str]] = {}
    departments = list(DEPARTMENTS)
    weights = list(DEPARTMENTS.values())
    for department in departments:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        head = {"email": email_for(first, last), "name": f"{first} {last}", "department": department,
                "manager": ceo["email"], "kind": "human", "status": "active", "title": f"VP {department}"}
        identities.append(head)
        heads[department] = [head["email"]]
    while len(identities) < people:
        department = rng.choices(departments, weights)[0]
        roll = rng.random()
        if roll < 0.03:
            name = f"{department.split()[0].lower()}-svc-{len(identities)}"
            identity = {"email": f"{name}@{domain}", "name": f"{department} service account", "kind": "service_account"}
        elif roll < 0.04:
            name = f"bot-{len(identities)}"
            identity = {"email": f"{name}@{domain}", "name": f"{department} automation bot", "kind": "bot"}
        elif roll < 0.05:
            name = f"agent-{len(identities)}"
            identity = {"email": f"{name}@{domain}", "name": f"{department} AI agent", "kind": "ai_agent"}
        else:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            identity = {"email": email_for(first, last), "name": f"{first} {last}", "kind": "human"}
        managers = heads[department]
        identity.update(
            department=department,
            manager=rng.choice(managers),
            status="terminated" if identity["kind"] == "human" and rng.random() < 0.04 else "active",
            title="" if identity["kind"] != "human" else rng.choice(("Associate", "Specialist", "Senior", "Lead", "Manager")),
        )
        if identity["kind"] == "human" and identity["title"] in ("Lead", "Manager") and len(managers) < 12:
            managers.append(identity["email"])
        identities.append(identity)

    owners = [f"{local}@{organization.slug}.test" for local in ("reviewer", "analyst", "admin", "superadmin")]
    app_rows = []
    for n, (name, category, sanctioned, _, _) in enumerate(APPLICATIONS):
        owner = owners[n % len(owners)]
        remediation = f"admin@{organization.slug}.test" if n % 3 == 0 else ""
        app_rows.append(f"{name},{category},{'yes' if sanctioned else 'no'},{owner},{remediation}")

    # Dates hang off today (not now), so loading the demo twice on one day changes nothing.
    today = timezone.now().date()
    grants: list[str] = []
    for identity in identities:
        per_person = rng.randint(5, 11) if identity["kind"] == "human" else rng.randint(1, 3)
        candidates = [a for a in APPLICATIONS if not a[3] or identity["department"] in a[3] or rng.random() < 0.03]
        for name, _, _, _, roles in rng.sample(candidates, min(per_person, len(candidates))):
            privileged = rng.random() < (0.25 if identity["department"] in ("IT", "Security") else 0.03)
            role = roles[0] if privileged or len(roles) == 1 else rng.choice(roles[1:])
            roll = rng.random()
            if roll < 0.08:
                last_used = ""
            elif roll < 0.22:
                last_used = (today - timedelta(days=rng.randint(91, 540))).isoformat()
            else:
                day = today - timedelta(days=rng.randint(1, 60))
                last_used = f"{day.isoformat()}T{rng.randint(6, 22):02d}:{rng.randint(0, 59):02d}:00Z"
            grants.append(f"{name},{identity['email']},{role},{last_used}")
    # Accounts nobody in HR knows about: they become orphaned identities.
    for n in range(max(20, people // 100)):
        name, _, _, _, roles = rng.choice(APPLICATIONS)
        grants.append(f"{name},former.contractor{n}@{domain},{rng.choice(roles)},")

    return {
        "applications": _csv("name,category,sanctioned,owner_email,remediation_owner_email", iter(app_rows)),
        "identities": _csv(
            "email,name,department,manager_email,kind,status,title",
            (
                f"{i['email']},{i['name']},{i['department']},{i['manager']},{i['kind']},{i['status']},{i['title']}"
                for i in identities
            ),
        ),
        "entitlements": _csv("application,identity_email,role,last_used", iter(grants)),
    }


def demo_inventory_load(*, organization: Organization, scale: int = 1) -> str:
    """Load (or refresh) the demo inventory of an organization; returns a one-line summary."""
    if scale < 1:
        raise ValueError("scale must be at least 1")
    files = demo_files(organization, scale=scale)
    parts = []
    with scope(organization):
        for kind in ("applications", "identities", "entitlements"):
            run = inventory_import(
                organization=organization, kind=kind, stream=files[kind], file_name=f"demo-{kind}.csv"
            )
            parts.append(f"{kind}: {run.created} created, {run.updated} updated, {run.unchanged} unchanged")
    return "; ".join(parts)
