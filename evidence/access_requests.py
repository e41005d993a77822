"""The access requests report for a period: every request made in it with its stages and trail, as a signed
evidence ZIP (``requests.csv``, ``approvals.csv``, ``trail.csv``, ``report.json``, ``SHA256SUMS`` and the signed
``manifest.json``), checked offline with ``manage.py verify_evidence`` like a campaign's package. The same
requests in the same state give the same bytes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from django.utils import timezone

from access_requests.models import AccessRequest
from access_requests.selectors import requests_in_period
from thalian.audit import audit_record
from thalian.models import Membership, Organization

from . import formats
from .contents import _json_bytes
from .items_csv import ExportError, _ts

REQUEST_COLUMNS = ["request_id", "type", "status", "identity", "application", "role", "reason", "ends_at",
                   "requested_by", "created_at", "decided_at", "fulfilled_at", "access_ended_at", "revoked_at",
                   "ticket_key", "ticket_state"]
APPROVAL_COLUMNS = ["request_id", "stage", "kind", "approver", "guest", "decision", "reason", "decided_by",
                    "decided_at", "note"]
TRAIL_COLUMNS = ["request_id", "at", "actor", "action", "message"]


def period_clean(*, start: str | None, end: str | None) -> tuple[dt.date, dt.date]:
    """[start, end] as dates; ExportError names the bad parameter."""
    values = []
    for name, value in (("start", start), ("end", end)):
        try:
            values.append(dt.date.fromisoformat(value or ""))
        except ValueError:
            raise ExportError(f"{name}: give a date as YYYY-MM-DD, not {value!r}.") from None
    if values[1] < values[0]:
        raise ExportError("end: the period ends before it starts.")
    return values[0], values[1]


def _bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    tz = timezone.get_current_timezone()
    return (dt.datetime.combine(start, dt.time.min, tzinfo=tz),
            dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=tz))


def _request_row(req: AccessRequest) -> list:
    return [str(req.pk), req.type, req.status, req.identity.email, req.application.name, req.role, req.reason,
            _ts(req.ends_at), req.requested_by_email, _ts(req.created_at), _ts(req.decided_at),
            _ts(req.fulfilled_at), _ts(req.access_ended_at), _ts(req.revoked_at), req.ticket_key, req.ticket_state]


def trail_csv(req: AccessRequest) -> Iterator[bytes]:
    """One request's trail, formula injection neutralised (the request page's CSV download)."""
    rows = [[str(req.pk), _ts(e.at), e.actor_email, e.action, e.message] for e in req.trail.all()]
    return formats.csv_stream(rows, header=TRAIL_COLUMNS)


def report_entries(*, organization: Organization, start: dt.date, end: dt.date) -> tuple[list, dict]:
    requests = list(requests_in_period(start=_bounds(start, end)[0], end=_bounds(start, end)[1]))
    approvals = [[str(r.pk), a.stage + 1, a.kind, a.approver_email, "yes" if a.is_guest else "no", a.decision,
                  a.reason, a.decided_by_email, _ts(a.decided_at), a.note] for r in requests for a in r.approvals.all()]
    trail = [[str(r.pk), _ts(e.at), e.actor_email, e.action, e.message] for r in requests for e in r.trail.all()]
    counts: dict[str, int] = {}
    for req in requests:
        counts[req.status] = counts.get(req.status, 0) + 1
    report = {"organization": organization.slug, "period_start": start.isoformat(), "period_end": end.isoformat(),
              "requests": len(requests), "by_status": dict(sorted(counts.items())), "trail_events": len(trail)}
    entries = [
        ("requests.csv", formats.csv_stream([_request_row(r) for r in requests], header=REQUEST_COLUMNS)),
        ("approvals.csv", formats.csv_stream(approvals, header=APPROVAL_COLUMNS)),
        ("trail.csv", formats.csv_stream(trail, header=TRAIL_COLUMNS)),
        ("report.json", [_json_bytes(report)]),
    ]
    fields = {"package": "access_requests_report", "organization": organization.slug,
              "period_start": start.isoformat(), "period_end": end.isoformat(), "request_count": len(requests)}
    return entries, fields


def access_requests_report_stream(*, organization: Organization, start: dt.date, end: dt.date,
                                  actor: Membership, request=None) -> Iterator[bytes]:
    key = formats.get_signing_key()  # SigningKeyError before the first byte when no key is configured
    entries, fields = report_entries(organization=organization, start=start, end=end)
    audit_record(action="evidence.access_requests_report", organization=organization, actor=actor.user,
                 request=request, target_type="organization", target_label=organization.slug,
                 details={"start": start.isoformat(), "end": end.isoformat(), "requests": fields["request_count"]})
    return formats.stream_package(entries, manifest_fields=fields, signing_key=key)


def report_file_name(*, organization: Organization, start: dt.date, end: dt.date) -> str:
    return f"access-requests-{organization.slug}-{start.isoformat()}-{end.isoformat()}.zip"
