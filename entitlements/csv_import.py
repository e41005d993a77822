"""Streaming reader and row validator for inventory CSV files.

The reader never holds the file: it decodes and validates row by row and yields one
normalized tuple per valid row, ready to be written to a PostgreSQL COPY stream. Checks
that need the whole file or the database (duplicate keys, unknown managers) are made
set-based on the staging table by the import service, which merges their errors with
the ones collected here.

Row numbers are the ones a spreadsheet shows: the header is row 1, so the first data
row is row 2.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

IDENTITIES = "identities"
APPLICATIONS = "applications"
ENTITLEMENTS = "entitlements"
KINDS = (IDENTITIES, APPLICATIONS, ENTITLEMENTS)

IDENTITY_KINDS = ("human", "service_account", "bot", "ai_agent")
IDENTITY_STATUSES = ("active", "terminated", "unknown")
TRUE_VALUES = frozenset({"true", "yes", "1", "y", "t"})
FALSE_VALUES = frozenset({"false", "no", "0", "n", "f"})

MAX_ERRORS = 100
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
READ_CHUNK = 1024 * 1024
BOM = "\ufeff"

# Kept in step with the column sizes of the entitlements models.
MAX_LENGTHS = {
    "email": 254,
    "name": 200,
    "department": 200,
    "title": 200,
    "category": 100,
    "role": 255,
    "application": 200,
}

# Deliberately loose: one "@", no spaces, a dot in the domain. Mail servers are the
# authority on the rest, and a stricter pattern rejects real addresses.
EMAIL_RE = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\".]+")


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row else "file"
        return f"{where}, {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


class ImportValidationError(Exception):
    """The file cannot be imported; `errors` lists the first problems, `total` counts all of them."""

    def __init__(self, errors: list[RowError], total: int | None = None) -> None:
        self.errors = sorted(errors, key=lambda e: (e.row, e.column))[:MAX_ERRORS]
        self.total = max(total or 0, len(errors))
        super().__init__(f"{self.total} problem(s): " + "; ".join(str(e) for e in self.errors[:5]))


@dataclass(frozen=True)
class KindSpec:
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    # COPY column list of the staging table, in the order of the yielded tuples
    # (after the leading row number).
    staging_columns: tuple[str, ...] = field(default=())


SPECS: dict[str, KindSpec] = {
    IDENTITIES: KindSpec(
        required=("email", "name", "department", "manager_email", "kind", "status"),
        optional=("title",),
        staging_columns=("email", "name", "department", "manager_email", "title", "kind", "status"),
    ),
    APPLICATIONS: KindSpec(
        required=("name", "category", "sanctioned", "owner_email"),
        optional=("remediation_owner_email",),
        staging_columns=("name", "category", "sanctioned", "owner_email", "remediation_owner_email"),
    ),
    ENTITLEMENTS: KindSpec(
        required=("application", "identity_email", "role", "last_used"),
        staging_columns=("application_id", "identity_email", "role", "last_used"),
    ),
}


class _LimitedReader(io.RawIOBase):
    """Binary stream wrapper that counts bytes, enforces the size limit and refuses NUL bytes."""

    def __init__(self, raw: IO[bytes], max_bytes: int) -> None:
        self.raw = raw
        self.max_bytes = max_bytes
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        if not data:
            return 0
        if not self.bytes_read and data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise _Utf16
        self.bytes_read += len(data)
        if self.bytes_read > self.max_bytes:
            raise _FileTooLarge
        if b"\x00" in data:
            raise _NulByte
        buffer[: len(data)] = data
        return len(data)


class _FileTooLarge(Exception):
    pass


class _NulByte(Exception):
    pass


class _Utf16(Exception):
    pass


def _size_label(max_bytes: int) -> str:
    if max_bytes >= 1024 * 1024:
        return f"{max_bytes / (1024 * 1024):g} MB"
    return f"{max_bytes} bytes"


def parse_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in TRUE_VALUES:
        return True
    if lowered in FALSE_VALUES:
        return False
    return None


def parse_last_used(value: str) -> datetime | None:
    """ISO 8601 date or date-time; a value without offset is taken as UTC. Raises ValueError."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


class CsvReader:
    """Validate one inventory file while streaming it.

    Usage: construct (checks encoding start and header, raising ImportValidationError
    at once for file-level problems), iterate `rows()` for the valid normalized rows,
    then look at `errors` / `error_total`. Iteration raises ImportValidationError for a
    problem that makes the rest of the file unreadable (not UTF-8, too large, NUL byte).

    `applications` maps application names, compared case-insensitively, to their ids;
    it is required for the entitlements kind.
    """

    def __init__(
        self,
        *,
        kind: str,
        stream: IO[bytes],
        max_bytes: int = DEFAULT_MAX_BYTES,
        applications: Mapping[str, Any] | None = None,
        size: int | None = None,
    ) -> None:
        if kind not in SPECS:
            raise ImportValidationError(
                [RowError(0, "kind", f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")]
            )
        if kind == ENTITLEMENTS and applications is None:
            raise ValueError("the entitlements kind needs the applications of the organization")
        self.kind = kind
        self.spec = SPECS[kind]
        self.max_bytes = max_bytes
        if size is not None and size > max_bytes:
            raise ImportValidationError(
                [RowError(0, "", f"file is {_size_label(size)}, over the {_size_label(max_bytes)} size limit")]
            )
        self.applications = {name.casefold(): value for name, value in (applications or {}).items()}
        self.errors: list[RowError] = []
        self.error_total = 0
        self.rows_read = 0
        self.last_row = 1
        self._limited = _LimitedReader(stream, max_bytes)
        self._buffered = io.BufferedReader(self._limited, buffer_size=READ_CHUNK)
        # Lines are decoded one by one (not in blocks) so a bad byte is reported on its line.
        self._reader = csv.reader(map(bytes.decode, self._buffered), strict=True)
        self._guard(self._check_start)
        self.columns: dict[str, int] = {}
        self._read_header()

    @property
    def bytes_read(self) -> int:
        return self._limited.bytes_read

    def error(self, row: int, column: str, message: str) -> None:
        self.error_total += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError(row, column, message))

    def _fatal(self, row: int, message: str) -> ImportValidationError:
        self.error(row, "", message)
        return ImportValidationError(self.errors, self.error_total)

    def _check_start(self) -> None:
        self._buffered.peek(2)

    def _next_record(self) -> list[str] | None:
        return self._guard(self._reader.__next__)

    def _guard(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except StopIteration:
            return None
        except UnicodeDecodeError as exc:
            raise self._fatal(
                self._reader.line_num + 1,
                f"file is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x}); save it as CSV UTF-8",
            ) from None
        except _FileTooLarge:
            raise self._fatal(0, f"file is over the {_size_label(self.max_bytes)} size limit") from None
        except _Utf16:
            raise self._fatal(1, "file is UTF-16, not UTF-8; save it as CSV UTF-8") from None
        except _NulByte:
            raise self._fatal(0, "file contains NUL bytes; it is not a CSV text file") from None
        except csv.Error as exc:
            raise self._fatal(self._reader.line_num, f"malformed CSV: {exc}") from None

    def _read_header(self) -> None:
        header = self._next_record()
        while header is not None and not any(cell.strip() for cell in header):
            header = self._next_record()
        if header is None:
            raise ImportValidationError([RowError(1, "", "file is empty; a header row is required")])
        header[0] = header[0].removeprefix(BOM)
        names = [cell.strip().lower() for cell in header]
        for position, name in enumerate(names):
            if not name:
                continue
            if name in self.columns:
                self.error(1, name, "column appears twice in the header")
            else:
                self.columns[name] = position
        missing = [name for name in self.spec.required if name not in self.columns]
        if missing:
            expected = ",".join(self.spec.required)
            self.error(
                1,
                ",".join(missing),
                f"missing column(s) {', '.join(missing)} in the header; {self.kind} files need {expected}",
            )
        if self.errors:
            raise ImportValidationError(self.errors, self.error_total)
        self.width = len(header)

    def rows(self) -> Iterator[tuple[Any, ...]]:
        validate = self._validator()
        width = self.width
        row = 1
        error = self.error
        while True:
            record = self._next_record()
            if record is None:
                break
            row += 1
            self.last_row = row
            if len(record) != width:
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                if len(record) < width:
                    error(row, "", f"row has {len(record)} fields, the header has {width}")
                    continue
                if any(cell.strip() for cell in record[width:]):
                    error(row, "", f"row has {len(record)} fields, the header has {width} (unquoted comma?)")
                    continue
            self.rows_read += 1
            values = validate(row, record)
            if values is not None:
                yield values

    def _validator(self) -> Callable[[int, list[str]], tuple[Any, ...] | None]:
        return {
            IDENTITIES: self._identity_validator,
            APPLICATIONS: self._application_validator,
            ENTITLEMENTS: self._entitlement_validator,
        }[self.kind]()

    def _check_email(self, row: int, column: str, value: str, *, required: bool) -> str | None:
        if not value:
            if required:
                self.error(row, column, "is required")
                return None
            return ""
        if len(value) > MAX_LENGTHS["email"] or EMAIL_RE.fullmatch(value) is None:
            self.error(row, column, f"{value[:80]!r} is not a valid e-mail address")
            return None
        return value.lower()

    def _check_length(self, row: int, column: str, value: str, limit_key: str) -> bool:
        if len(value) > MAX_LENGTHS[limit_key]:
            self.error(row, column, f"is longer than {MAX_LENGTHS[limit_key]} characters")
            return False
        return True

    def _identity_validator(self) -> Callable[[int, list[str]], tuple[Any, ...] | None]:
        c = self.columns
        i_email, i_name, i_dept, i_mgr = c["email"], c["name"], c["department"], c["manager_email"]
        i_kind, i_status = c["kind"], c["status"]
        i_title = c.get("title")
        kinds, statuses = frozenset(IDENTITY_KINDS), frozenset(IDENTITY_STATUSES)

        def validate(row: int, record: list[str]) -> tuple[Any, ...] | None:
            before = self.error_total
            email = self._check_email(row, "email", record[i_email].strip(), required=True)
            manager = self._check_email(row, "manager_email", record[i_mgr].strip(), required=False)
            if email and manager and email == manager:
                self.error(row, "manager_email", "an identity cannot be its own manager")
            name = record[i_name].strip()
            department = record[i_dept].strip()
            title = record[i_title].strip() if i_title is not None else None
            self._check_length(row, "name", name, "name")
            self._check_length(row, "department", department, "department")
            if title:
                self._check_length(row, "title", title, "title")
            kind = record[i_kind].strip().lower() or "human"
            if kind not in kinds:
                self.error(row, "kind", f"unknown kind {kind!r}; expected one of: {', '.join(IDENTITY_KINDS)}")
            status = record[i_status].strip().lower() or "active"
            if status not in statuses:
                self.error(
                    row, "status", f"unknown status {status!r}; expected one of: {', '.join(IDENTITY_STATUSES)}"
                )
            if self.error_total != before:
                return None
            return (row, email, name, department, manager, title, kind, status)

        return validate

    def _application_validator(self) -> Callable[[int, list[str]], tuple[Any, ...] | None]:
        c = self.columns
        i_name, i_cat, i_sanc, i_owner = c["name"], c["category"], c["sanctioned"], c["owner_email"]
        i_rem = c.get("remediation_owner_email")

        def validate(row: int, record: list[str]) -> tuple[Any, ...] | None:
            before = self.error_total
            name = record[i_name].strip()
            if not name:
                self.error(row, "name", "is required")
            else:
                self._check_length(row, "name", name, "application")
            category = record[i_cat].strip()
            self._check_length(row, "category", category, "category")
            raw = record[i_sanc].strip()
            sanctioned = parse_bool(raw)
            if sanctioned is None:
                self.error(row, "sanctioned", f"{raw!r} is not one of true/false/yes/no/1/0")
            owner = self._check_email(row, "owner_email", record[i_owner].strip(), required=False)
            remediation = (
                self._check_email(row, "remediation_owner_email", record[i_rem].strip(), required=False)
                if i_rem is not None
                else None
            )
            if self.error_total != before:
                return None
            return (row, name, category, sanctioned, owner, remediation)

        return validate

    def _entitlement_validator(self) -> Callable[[int, list[str]], tuple[Any, ...] | None]:
        c = self.columns
        i_app, i_email, i_role, i_used = c["application"], c["identity_email"], c["role"], c["last_used"]
        applications = self.applications
        fullmatch = EMAIL_RE.fullmatch
        max_email, max_role = MAX_LENGTHS["email"], MAX_LENGTHS["role"]
        error = self.error
        fromisoformat = datetime.fromisoformat
        # Files repeat the same few dates a lot; parsing each distinct text once keeps the
        # hot loop cheap. Bounded so a file of all-distinct timestamps cannot grow it.
        date_cache: dict[str, str] = {}

        # This closure is the hot loop of a million-row import: it avoids helper calls on
        # the happy path and only falls back to the slower checks when a value is off.
        def validate(row: int, record: list[str]) -> tuple[Any, ...] | None:
            ok = True
            app_name = record[i_app].strip()
            app_id = applications.get(app_name.casefold())
            if app_id is None:
                ok = False
                if not app_name:
                    error(row, "application", "is required")
                else:
                    error(row, "application", f"unknown application {app_name[:80]!r}; import it first")
            email = record[i_email].strip()
            if not email or len(email) > max_email or fullmatch(email) is None:
                ok = False
                if not email:
                    error(row, "identity_email", "is required")
                else:
                    error(row, "identity_email", f"{email[:80]!r} is not a valid e-mail address")
            role = record[i_role].strip()
            if not role or len(role) > max_role:
                ok = False
                error(row, "role", "is required" if not role else f"is longer than {max_role} characters")
            used = record[i_used].strip()
            if used:
                last_used = date_cache.get(used)
                if last_used is None:
                    try:
                        parsed = fromisoformat(used)
                    except ValueError:
                        ok = False
                        error(row, "last_used", f"{used[:40]!r} is not an ISO 8601 date or date-time")
                    else:
                        if parsed.tzinfo is None:
                            parsed = parsed.replace(tzinfo=UTC)
                        last_used = parsed.isoformat()
                        if len(date_cache) < 100_000:
                            date_cache[used] = last_used
            else:
                last_used = None
            if not ok:
                return None
            return (row, app_id, email.lower(), role, last_used)

        return validate


def copy_escape(value: Any) -> str:
    """Render one value for PostgreSQL COPY text format."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def copy_lines(rows: Iterator[tuple[Any, ...]], *, batch: int = 5000) -> Iterator[str]:
    """Turn validated rows into COPY text-format blocks of `batch` lines each."""
    escape = copy_escape
    lines: list[str] = []
    append = lines.append
    for values in rows:
        append("\t".join([escape(v) for v in values]))
        if len(lines) >= batch:
            yield "\n".join(lines) + "\n"
            lines.clear()
    if lines:
        yield "\n".join(lines) + "\n"
