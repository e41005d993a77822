"""The decision hash chain and the cell text it covers: every decision event of a campaign is linked to the
previous one by ``decision_hash``, computed over the exact text each field has in an exported CSV.

This module holds no models, no queries and no Django imports, so a package can be verified on a machine
that only has Python (the evidence app's verifier and exports build on it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Any
from uuid import UUID

# --------------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------------

# A spreadsheet evaluates a cell that starts with one of these as a formula (OWASP "CSV Injection";
# tab and carriage return are included because Excel strips them and then evaluates what follows).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def format_timestamp(value: dt.datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix; naive datetimes are taken to be UTC already."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def cell_text(value: Any) -> str:
    """The text a value is written as in evidence files (before neutralisation)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal | int | float):
        return str(value)
    return str(value)


def neutralize_cell(value: Any) -> str:
    """Text for a CSV cell that a spreadsheet shows as text, never as a formula.

    A value starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading single quote,
    which spreadsheets treat as "this cell is text" and do not display. The function is idempotent.
    """
    text = cell_text(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


# --------------------------------------------------------------------------------------------------
# Canonical JSON and the chain
# --------------------------------------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (non-ASCII kept as is). Only JSON types are accepted."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


GENESIS_HASH = "0" * 64

# Fields covered by the hash only when they have a value (an exception's expiry date, the stage of a
# multi-stage campaign, the member a delegate decided for), so events written before such a field existed keep
# the hashes they were chained with.
OPTIONAL_HASH_FIELDS = frozenset({"expires_on", "stage", "on_behalf_of_email"})


def decision_hash_payload(fields: dict[str, Any]) -> dict[str, str]:
    """The hashed text of each field: ``neutralize_cell`` of its value, optional fields left out when empty."""
    payload = {name: neutralize_cell(value) for name, value in fields.items()}
    return {name: text for name, text in payload.items() if text or name not in OPTIONAL_HASH_FIELDS}


def decision_hash(prev_hash: str | None, fields: dict[str, Any]) -> str:
    """SHA-256 (hex) linking one decision event to the previous one in its campaign.

    The digest covers the canonical JSON of ``{"prev_hash": ..., **fields}`` where each field value is
    the exact text it has in ``decisions_log.csv`` (``neutralize_cell``: None is empty, datetimes are
    ISO 8601 UTC). The first event of a campaign passes ``None`` (or ``""``), which stands for
    ``GENESIS_HASH``. A field may not be called ``prev_hash`` or ``hash``.
    """
    if "prev_hash" in fields or "hash" in fields:
        raise ValueError("decision fields may not be named 'prev_hash' or 'hash'")
    payload = decision_hash_payload(fields)
    payload["prev_hash"] = prev_hash or GENESIS_HASH
    return hashlib.sha256(canonical_json(payload)).hexdigest()
