"""Ticketing-system adapters: one class per vendor behind a common interface.

Every adapter offers ``test_connection()``, ``create_ticket(content)``, ``find_ticket(reference)``,
``add_comment(ticket_id, text)``, ``find_comment(ticket_id, reference)`` and ``get_status(ticket_id)``. Failures surface as ``ItsmTransientError``
(worth retrying later) or ``ItsmPermanentError`` (needs a person to fix something), each carrying the vendor's
own message.

Every created ticket carries the item's reference (``thalian-item-<id>``) where the vendor can search for it:
a Jira label, ServiceNow's ``correlation_id``, Zendesk's ``external_id`` and a Freshservice tag. A create whose
outcome is unknown (``ItsmTransientError.outcome_unknown``: the request went out but no answer came back) is
followed by ``find_ticket`` before any second create, so a slow vendor never gets the same ticket twice.
Comments work the same way: each carries ``thalian-comment-<id>`` in its text, and a comment whose earlier
attempt may have gone through is looked for (``find_comment``) before it is posted again.
"""

from __future__ import annotations

import contextlib
import html
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import requests

from thalian import netguard

TIMEOUT_SECONDS = 10.0
# Comments read back when looking for one an earlier attempt may have posted (newest first where the vendor
# sorts): that attempt was minutes ago, so it is among the latest.
COMMENT_LOOKBACK = 100

TICKET_OPEN = "open"
TICKET_IN_PROGRESS = "in_progress"
TICKET_RESOLVED = "resolved"


class ItsmError(Exception):
    status: int | None = None  # the vendor's HTTP status, when it answered

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ItsmTransientError(ItsmError):
    """Connection errors, timeouts, 5xx and 429: the same call may succeed later.

    ``outcome_unknown`` is set when the request may have been carried out: it was sent and the answer never
    came (a read timeout, a connection reset) or a 500/502/504 may have come from after the write."""

    def __init__(self, message: str, retry_after: float | None = None, *, outcome_unknown: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown


class ItsmPermanentError(ItsmError):
    """400/401/403/404 and malformed answers: retrying without a change will fail again."""


@dataclass(frozen=True)
class TicketContent:
    summary: str
    description: str
    item_url: str
    identity_email: str
    identity_name: str
    application: str
    role: str
    decided_by: str
    reason: str
    campaign: str
    due_date: str = ""
    requester_email: str = ""
    reference: str = ""


@dataclass(frozen=True)
class RemoteTicket:
    key: str
    url: str
    status: str
    remote_id: str = ""

    def __post_init__(self) -> None:
        if not self.remote_id:
            object.__setattr__(self, "remote_id", self.key)


class BaseUrlError(ValueError):
    pass


def validate_base_url(url: str, *, allow_http: bool = False) -> str:
    """Return the normalised base URL, or raise BaseUrlError naming what is wrong."""
    url = (url or "").strip()
    if not url:
        raise BaseUrlError("Base URL is required.")
    parts = urlsplit(url)
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        if parts.scheme == "http":
            raise BaseUrlError("Base URL must use https.")
        raise BaseUrlError("Base URL must start with https://.")
    if not parts.hostname:
        raise BaseUrlError("Base URL must include a host name.")
    if parts.query or parts.fragment:
        raise BaseUrlError("Base URL must not contain a query string or fragment.")
    if parts.username or parts.password:
        raise BaseUrlError("Base URL must not contain credentials.")
    try:
        parts.port  # noqa: B018 - raises on an out-of-range port
    except ValueError as exc:
        raise BaseUrlError("Base URL has an invalid port.") from exc
    try:
        netguard.check_url(url)
    except netguard.AddressNotAllowed as exc:
        raise BaseUrlError(str(exc)) from exc
    return url.rstrip("/")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _json_message(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_for_response(response: requests.Response, message: str) -> ItsmError:
    status = response.status_code
    text = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    error: ItsmError
    if status == 429:
        error = ItsmTransientError(text, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    elif status >= 500 or status == 408:
        error = ItsmTransientError(
            text,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            # 503 and 408 say the request was not handled; other server errors may follow a write.
            outcome_unknown=status in (500, 502, 504),
        )
    else:
        error = ItsmPermanentError(text)
    error.status = status
    return error


class _VendorAdapter(netguard.GuardedAdapter):
    """Applies the timeout, certificate and internal-address policy to every call, whatever the vendor library
    passes.

    pysnc never sets a timeout, and requests lets REQUESTS_CA_BUNDLE override a session's own CA bundle;
    a connection configured with its own bundle (or with verification off) must keep it.
    """

    def __init__(self, *, timeout: float, verify: bool | str):
        super().__init__()
        self.timeout = timeout
        self.verify = verify

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        if self.verify is not True:
            verify = self.verify
        return super().send(
            request, stream=stream, timeout=timeout or self.timeout, verify=verify, cert=cert, proxies=proxies
        )


def _vendor_session(
    *,
    auth: tuple[str, str],
    verify: bool | str,
    timeout: float,
    message_of: Callable[[requests.Response], str],
) -> requests.Session:
    """A session that turns every non-2xx answer into an ItsmError before the vendor library sees it.

    Libraries such as zenpy sleep through 429s in-process and pysnc drops the status code; raising from the
    response hook keeps the retry decision (and its Retry-After) with the caller.
    """

    def raise_for_error(response: requests.Response, *args, **kwargs) -> requests.Response:
        if response.status_code >= 400:
            raise error_for_response(response, message_of(response))
        return response

    session = requests.Session()
    session.auth = auth
    session.verify = verify
    session.headers["Accept"] = "application/json"
    netguard.guard_session(session, _VendorAdapter(timeout=timeout, verify=verify))
    session.hooks["response"].append(raise_for_error)
    return session


@contextlib.contextmanager
def _network_errors(vendor: str, timeout: float) -> Iterator[None]:
    try:
        yield
    except ItsmError:
        raise
    except netguard.AddressNotAllowed as exc:
        raise ItsmPermanentError(f"{vendor}: {exc}") from exc
    except requests.ConnectTimeout as exc:
        raise ItsmTransientError(f"Could not connect to {vendor} within {timeout:g} seconds.") from exc
    except requests.Timeout as exc:
        raise ItsmTransientError(
            f"{vendor} did not answer within {timeout:g} seconds.", outcome_unknown=True
        ) from exc
    except requests.exceptions.SSLError as exc:
        raise ItsmTransientError(f"The TLS certificate of {vendor} was not accepted: {_short(exc)}") from exc
    except requests.ConnectionError as exc:
        raise ItsmTransientError(
            f"Could not connect to {vendor}: {_short(exc)}", outcome_unknown=not _never_sent(exc)
        ) from exc
    except requests.RequestException as exc:
        raise ItsmTransientError(f"{vendor} request failed: {_short(exc)}", outcome_unknown=True) from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ItsmPermanentError(f"{vendor} sent an answer Thalian could not read ({_short(exc)}).") from exc


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection was never established (refused, unresolvable, connect timeout), so the
    vendor cannot have seen the request; a reset or a dropped connection after sending is not."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _short(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text if len(text) <= 300 else text[:297] + "..."


class TicketClient:
    vendor: ClassVar[str] = ""
    timeout: float = TIMEOUT_SECONDS

    def _network_errors(self) -> contextlib.AbstractContextManager[None]:
        return _network_errors(self.vendor, self.timeout)

    def test_connection(self) -> str:
        raise NotImplementedError

    def create_ticket(self, content: TicketContent) -> RemoteTicket:
        raise NotImplementedError

    def find_ticket(self, reference: str) -> RemoteTicket | None:
        """The ticket created earlier with this reference, or None when the vendor has none."""
        raise NotImplementedError

    def add_comment(self, ticket_id: str, text: str) -> None:
        raise NotImplementedError

    def find_comment(self, ticket_id: str, reference: str) -> bool:
        """True when the ticket already has a comment whose text carries ``reference``."""
        raise NotImplementedError

    def get_status(self, ticket_id: str) -> str:
        raise NotImplementedError


# Jira ----------------------------------------------------------------------------------------------------

JIRA_CATEGORY_STATUS = {"new": TICKET_OPEN, "indeterminate": TICKET_IN_PROGRESS, "done": TICKET_RESOLVED}


def jira_status(status: dict[str, Any]) -> str:
    category = (status.get("statusCategory") or {}).get("key", "")
    return JIRA_CATEGORY_STATUS.get(category, TICKET_OPEN)


def jira_error_message(response: requests.Response | None) -> str:
    if response is None:
        return ""
    data = _json_message(response)
    if isinstance(data, dict):
        messages = list(data.get("errorMessages") or [])
        errors = data.get("errors") or {}
        if isinstance(errors, dict):
            messages += [f"{name}: {text}" for name, text in errors.items()]
        if data.get("message"):
            messages.append(str(data["message"]))
        if messages:
            return "; ".join(str(m) for m in messages)
    return (response.text or response.reason or "").strip()[:300]


class JiraClient(TicketClient):
    vendor = "Jira"

    def __init__(
        self,
        *,
        base_url: str,
        email: str,
        api_token: str,
        project_key: str,
        issue_type: str = "Task",
        verify: bool | str = True,
        timeout: float = TIMEOUT_SECONDS,
    ):
        self.timeout = timeout
        from jira import JIRA

        self.base_url = base_url.rstrip("/")
        self.project_key = project_key
        self.issue_type = issue_type or "Task"
        # max_retries=0: retries and their backoff belong to the task, not to a sleeping library.
        self._jira = JIRA(
            server=self.base_url,
            basic_auth=(email, api_token),
            options={"verify": verify, "check_update": False},
            get_server_info=False,
            max_retries=0,
            timeout=timeout,
        )
        netguard.guard_session(self._jira._session, _VendorAdapter(timeout=timeout, verify=verify))

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        from jira.exceptions import JIRAError

        with self._network_errors():
            try:
                yield
            except JIRAError as exc:
                response = exc.response if isinstance(exc.response, requests.Response) else None
                if response is None or exc.status_code is None:
                    raise ItsmPermanentError(f"Jira rejected the request: {exc.text or exc}") from exc
                raise error_for_response(response, jira_error_message(response) or exc.text or "") from exc

    def ticket_url(self, key: str) -> str:
        return f"{self.base_url}/browse/{key}"

    def test_connection(self) -> str:
        with self._errors():
            me = self._jira.myself()
            project = self._jira.project(self.project_key)
            return f"Connected as {me.get('displayName') or me.get('emailAddress') or 'API user'}; project {project.key} ({project.name})."

    def create_ticket(self, content: TicketContent) -> RemoteTicket:
        fields = {
            "project": {"key": self.project_key},
            "issuetype": {"name": self.issue_type},
            "summary": content.summary[:250],
            "description": content.description,
        }
        if content.reference:
            fields["labels"] = [content.reference]
        with self._errors():
            issue = self._jira.create_issue(fields=fields, prefetch=False)
            key = str(issue.key)
        return RemoteTicket(key=key, url=self.ticket_url(key), status=TICKET_OPEN)

    def find_ticket(self, reference: str) -> RemoteTicket | None:
        # GET /rest/api/2/search/jql (the search that replaces the retired /search on Jira Cloud); the
        # library's search_issues only takes that route once it has asked the server what it is.
        jql = f'project = "{self.project_key}" AND labels = "{reference}" ORDER BY created ASC'
        with self._errors():
            data = self._jira._get_json("search/jql", params={"jql": jql, "fields": "status", "maxResults": 1})
            issues = data.get("issues") or []
            if not issues:
                return None
            key = str(issues[0]["key"])
            status = jira_status(issues[0]["fields"]["status"])
        return RemoteTicket(key=key, url=self.ticket_url(key), status=status)

    def add_comment(self, ticket_id: str, text: str) -> None:
        with self._errors():
            self._jira.add_comment(ticket_id, text)

    def find_comment(self, ticket_id: str, reference: str) -> bool:
        # GET /rest/api/2/issue/<key>/comment, newest first: a comment an earlier attempt posted is recent.
        with self._errors():
            data = self._jira._get_json(
                f"issue/{ticket_id}/comment", params={"orderBy": "-created", "maxResults": COMMENT_LOOKBACK}
            )
            return any(reference in str(c.get("body") or "") for c in data.get("comments") or [])

    def get_status(self, ticket_id: str) -> str:
        with self._errors():
            issue = self._jira.issue(ticket_id, fields="status")
            return jira_status(issue.raw["fields"]["status"])


# ServiceNow ----------------------------------------------------------------------------------------------


def servicenow_status(*, state: str, active: str) -> str:
    if str(active).lower() == "false":
        return TICKET_RESOLVED
    # Incident: 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed, 8 Canceled. Task tables use
    # 1 Open, 2 Work in Progress, 3+ closed states and -5 Pending; `active` settles the closed ones above.
    if str(state) in ("1", "-5", ""):
        return TICKET_OPEN
    if str(state) in ("6", "7", "8"):
        return TICKET_RESOLVED
    return TICKET_IN_PROGRESS


def servicenow_error_message(response: requests.Response) -> str:
    data = _json_message(response)
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        parts = [str(error.get("message") or ""), str(error.get("detail") or "")]
        return ": ".join(p for p in parts if p)
    return (response.text or response.reason or "").strip()[:300]


class ServiceNowClient(TicketClient):
    vendor = "ServiceNow"

    def __init__(
        self,
        *,
        base_url: str,
        username: str,
        password: str,
        table: str = "incident",
        assignment_group: str = "",
        verify: bool | str = True,
        timeout: float = TIMEOUT_SECONDS,
    ):
        self.timeout = timeout
        import pysnc
        from pysnc.exceptions import InstanceException

        self.base_url = base_url.rstrip("/")
        self.table = table or "incident"
        self.assignment_group = assignment_group
        session = _vendor_session(
            auth=(username, password), verify=verify, timeout=timeout, message_of=servicenow_error_message
        )
        try:
            self._client = pysnc.ServiceNowClient(
                self.base_url, auth=session, verify=verify, auto_retry=False
            )
        except InstanceException as exc:
            raise ItsmPermanentError(f"ServiceNow: {exc}") from exc

    def _record(self):
        return self._client.GlideRecord(self.table)

    def ticket_url(self, sys_id: str) -> str:
        return f"{self.base_url}/nav_to.do?uri={self.table}.do?sys_id={sys_id}"

    def test_connection(self) -> str:
        with self._network_errors():
            record = self._record()
            record.limit = 1
            record.fields = ["sys_id"]
            record.query()
            return f"Connected; table {self.table} is readable."

    def create_ticket(self, content: TicketContent) -> RemoteTicket:
        with self._network_errors():
            record = self._record()
            record.initialize()
            record.short_description = content.summary[:160]
            record.description = content.description
            if content.reference:
                record.correlation_id = content.reference
            if self.assignment_group:
                record.assignment_group = self.assignment_group
            sys_id = record.insert()
            if not sys_id:
                raise ItsmPermanentError("ServiceNow created no record.")
            sys_id = str(sys_id.get_value() if hasattr(sys_id, "get_value") else sys_id)
            return self._remote(record, sys_id)

    def _remote(self, record, sys_id: str) -> RemoteTicket:
        number = str(record.get_value("number") or sys_id)
        status = servicenow_status(
            state=str(record.get_value("state") or "1"), active=str(record.get_value("active") or "true")
        )
        return RemoteTicket(key=number, url=self.ticket_url(sys_id), status=status, remote_id=sys_id)

    def find_ticket(self, reference: str) -> RemoteTicket | None:
        with self._network_errors():
            record = self._record()
            record.add_query("correlation_id", reference)
            record.order_by("sys_created_on")
            record.limit = 1
            record.fields = ["sys_id", "number", "state", "active"]
            record.query()
            if not record.next():
                return None
            return self._remote(record, str(record.get_value("sys_id")))

    def add_comment(self, ticket_id: str, text: str) -> None:
        with self._network_errors():
            record = self._record()
            if not record.get(ticket_id):
                raise ItsmPermanentError(f"ServiceNow record {ticket_id} was not found in {self.table}.")
            record.work_notes = text
            record.update()

    def find_comment(self, ticket_id: str, reference: str) -> bool:
        # Work notes are journal entries: GET /api/now/table/sys_journal_field?sysparm_query=
        # element_id=<sys_id>^element=work_notes^valueLIKE<reference>. An account without read access to
        # the journal table gets 403; the note is then posted without the check (at least once).
        with self._network_errors():
            journal = self._client.GlideRecord("sys_journal_field")
            journal.add_query("element_id", ticket_id)
            journal.add_query("element", "work_notes")
            journal.add_query("value", "LIKE", reference)
            journal.limit = 1
            journal.fields = ["sys_id"]
            try:
                journal.query()
            except ItsmPermanentError as exc:
                if exc.status == 403:
                    return False
                raise
            return bool(journal.next())

    def get_status(self, ticket_id: str) -> str:
        with self._network_errors():
            record = self._record()
            if not record.get(ticket_id):
                raise ItsmPermanentError(f"ServiceNow record {ticket_id} was not found in {self.table}.")
            return servicenow_status(
                state=str(record.get_value("state") or ""), active=str(record.get_value("active") or "true")
            )


# Freshservice --------------------------------------------------------------------------------------------

FRESHSERVICE_PRIORITIES = {1: "Low", 2: "Medium", 3: "High", 4: "Urgent"}
FRESHSERVICE_STATUS = {2: TICKET_OPEN, 3: TICKET_IN_PROGRESS, 4: TICKET_RESOLVED, 5: TICKET_RESOLVED}
FRESHSERVICE_SOURCE_PORTAL = 2
FRESHSERVICE_STATUS_OPEN = 2


def freshservice_status(status: int) -> str:
    return FRESHSERVICE_STATUS.get(int(status), TICKET_IN_PROGRESS)


def freshservice_error_message(response: requests.Response) -> str:
    data = _json_message(response)
    if isinstance(data, dict):
        parts = []
        for key in ("description", "message"):
            if data.get(key):
                parts.append(str(data[key]))
        for error in data.get("errors") or []:
            if isinstance(error, dict):
                parts.append(f"{error.get('field', '')}: {error.get('message', '')}".strip(": "))
        if parts:
            return "; ".join(parts)
    return (response.text or response.reason or "").strip()[:300]


def _plain_text_to_html(text: str) -> str:
    return "<br>".join(html.escape(line) for line in text.splitlines())


class FreshserviceClient(TicketClient):
    vendor = "Freshservice"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        group_id: int | None = None,
        priority: int | None = None,
        verify: bool | str = True,
        timeout: float = TIMEOUT_SECONDS,
    ):
        self.timeout = timeout
        self.base_url = base_url.rstrip("/")
        self.group_id = int(group_id) if group_id not in (None, "") else None
        self.priority = int(priority) if priority not in (None, "") else 2
        self._session = _vendor_session(
            auth=(api_key, "X"), verify=verify, timeout=timeout, message_of=freshservice_error_message
        )

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        with self._network_errors():
            response = self._session.request(
                method, f"{self.base_url}/api/v2/{path}", json=body, timeout=self.timeout
            )
            return response.json() if response.content else {}

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.base_url}/a/tickets/{ticket_id}"

    def test_connection(self) -> str:
        self._call("GET", "tickets?per_page=1")
        return "Connected; tickets are readable."

    def create_ticket(self, content: TicketContent) -> RemoteTicket:
        body: dict[str, Any] = {
            "subject": content.summary[:255],
            "description": _plain_text_to_html(content.description),
            "email": content.requester_email or content.identity_email,
            "status": FRESHSERVICE_STATUS_OPEN,
            "priority": self.priority,
            "source": FRESHSERVICE_SOURCE_PORTAL,
        }
        if self.group_id is not None:
            body["group_id"] = self.group_id
        if content.reference:
            body["tags"] = [content.reference]
        data = self._call("POST", "tickets", body)
        return self._remote(data)

    def _remote(self, data: dict) -> RemoteTicket:
        with self._network_errors():
            ticket = data["ticket"]
            ticket_id = str(int(ticket["id"]))
            status = freshservice_status(ticket.get("status", FRESHSERVICE_STATUS_OPEN))
        return RemoteTicket(key=ticket_id, url=self.ticket_url(ticket_id), status=status)

    def find_ticket(self, reference: str) -> RemoteTicket | None:
        # The reference travels as a tag; the filter API searches tags (GET /api/v2/tickets/filter,
        # query="tag:'<reference>'"), oldest first so the original ticket wins over any later duplicate.
        query = quote(f"\"tag:'{reference}'\"", safe="")
        data = self._call("GET", f"tickets/filter?query={query}&order_by=created_at&order_type=asc")
        with self._network_errors():
            tickets = data.get("tickets") or []
        return self._remote({"ticket": tickets[0]}) if tickets else None

    def add_comment(self, ticket_id: str, text: str) -> None:
        self._call(
            "POST", f"tickets/{int(ticket_id)}/notes", {"body": _plain_text_to_html(text), "private": True}
        )

    def find_comment(self, ticket_id: str, reference: str) -> bool:
        # GET /api/v2/tickets/<id>/conversations: notes and replies, with their text.
        data = self._call("GET", f"tickets/{int(ticket_id)}/conversations?per_page={COMMENT_LOOKBACK}")
        with self._network_errors():
            return any(
                reference in str(c.get("body_text") or c.get("body") or "") for c in data.get("conversations") or []
            )

    def get_status(self, ticket_id: str) -> str:
        data = self._call("GET", f"tickets/{int(ticket_id)}")
        with self._network_errors():
            return freshservice_status(data["ticket"]["status"])


# Zendesk -------------------------------------------------------------------------------------------------

ZENDESK_PRIORITIES = ("low", "normal", "high", "urgent")
ZENDESK_STATUS = {
    "new": TICKET_OPEN,
    "open": TICKET_IN_PROGRESS,
    "pending": TICKET_IN_PROGRESS,
    "hold": TICKET_IN_PROGRESS,
    "solved": TICKET_RESOLVED,
    "closed": TICKET_RESOLVED,
}


def zendesk_status(status: str) -> str:
    return ZENDESK_STATUS.get(str(status), TICKET_OPEN)


def zendesk_error_message(response: requests.Response) -> str:
    data = _json_message(response)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            parts = [str(error.get("title") or ""), str(error.get("message") or "")]
        else:
            parts = [str(error or ""), str(data.get("description") or "")]
        details = data.get("details")
        if isinstance(details, dict):
            for name, problems in details.items():
                for problem in problems if isinstance(problems, list) else [problems]:
                    text = problem.get("description") if isinstance(problem, dict) else problem
                    parts.append(f"{name}: {text}")
        message = ": ".join(p for p in parts if p)
        if message:
            return message
    return (response.text or response.reason or "").strip()[:300]


class ZendeskClient(TicketClient):
    vendor = "Zendesk"

    def __init__(
        self,
        *,
        base_url: str,
        email: str,
        api_token: str,
        group_id: int | None = None,
        priority: str = "",
        tags: list[str] | tuple[str, ...] = (),
        verify: bool | str = True,
        timeout: float = TIMEOUT_SECONDS,
    ):
        self.timeout = timeout
        from zenpy import Zenpy

        self.base_url = base_url.rstrip("/")
        self.group_id = int(group_id) if group_id not in (None, "") else None
        self.priority = priority or ""
        self.tags = [t for t in tags if t]
        parts = urlsplit(self.base_url)
        # zenpy builds "<scheme>://<subdomain>.<domain>/api/v2"; splitting the host at its first dot
        # reproduces any base URL, including a custom host and port.
        subdomain, _, domain = (parts.netloc or "").partition(".")
        if not domain:
            raise ItsmPermanentError(
                "Zendesk base URL must be a full host name such as https://acme.zendesk.com."
            )
        session = _vendor_session(
            auth=(f"{email}/token", api_token),
            verify=verify,
            timeout=timeout,
            message_of=zendesk_error_message,
        )
        self._zenpy = Zenpy(
            subdomain=subdomain,
            domain=domain,
            email=email,
            token=api_token,
            session=session,
            timeout=timeout,
            disable_cache=True,
        )
        for api in (self._zenpy.tickets, self._zenpy.users):
            api.protocol = parts.scheme

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.base_url}/agent/tickets/{ticket_id}"

    def test_connection(self) -> str:
        with self._network_errors():
            me = self._zenpy.users.me()
            if getattr(me, "id", None) is None:
                raise ItsmPermanentError(
                    "Zendesk answered as an anonymous user: check the e-mail and API token."
                )
            return f"Connected as {me.name or me.email}."

    def create_ticket(self, content: TicketContent) -> RemoteTicket:
        from zenpy.lib.api_objects import Comment, Ticket

        ticket = Ticket(
            subject=content.summary[:150],
            comment=Comment(body=content.description, public=False),
        )
        if self.tags:
            ticket.tags = list(self.tags)
        if self.group_id is not None:
            ticket.group_id = self.group_id
        if self.priority:
            ticket.priority = self.priority
        if content.reference:
            ticket.external_id = content.reference
        with self._network_errors():
            audit = self._zenpy.tickets.create(ticket)
            return self._remote(audit.ticket)

    def _remote(self, ticket) -> RemoteTicket:
        ticket_id = str(int(ticket.id))
        return RemoteTicket(key=ticket_id, url=self.ticket_url(ticket_id), status=zendesk_status(ticket.status or "new"))

    def find_ticket(self, reference: str) -> RemoteTicket | None:
        # GET /api/v2/tickets.json?external_id=<reference>
        with self._network_errors():
            found = sorted(self._zenpy.tickets(external_id=reference), key=lambda t: int(t.id))
            return self._remote(found[0]) if found else None

    def add_comment(self, ticket_id: str, text: str) -> None:
        from zenpy.lib.api_objects import Comment, Ticket

        with self._network_errors():
            self._zenpy.tickets.update(Ticket(id=int(ticket_id), comment=Comment(body=text, public=False)))

    def find_comment(self, ticket_id: str, reference: str) -> bool:
        # GET /api/v2/tickets/<id>/comments.json (every page).
        with self._network_errors():
            return any(
                reference in str(getattr(c, "plain_body", None) or getattr(c, "body", None) or "")
                for c in self._zenpy.tickets.comments(ticket=int(ticket_id))
            )

    def get_status(self, ticket_id: str) -> str:
        with self._network_errors():
            ticket = self._zenpy.tickets(id=int(ticket_id))
            return zendesk_status(ticket.status)


# Registry ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindSpec:
    label: str
    client: type[TicketClient]
    identity_fields: tuple[str, ...]
    secret_fields: tuple[str, ...]
    setting_fields: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)


KINDS: dict[str, KindSpec] = {
    "jira": KindSpec(
        "Jira", JiraClient, ("email",), ("api_token",), ("project_key", "issue_type"), {"issue_type": "Task"}
    ),
    "servicenow": KindSpec(
        "ServiceNow",
        ServiceNowClient,
        ("username",),
        ("password",),
        ("table", "assignment_group"),
        {"table": "incident", "assignment_group": ""},
    ),
    "freshservice": KindSpec(
        "Freshservice",
        FreshserviceClient,
        (),
        ("api_key",),
        ("group_id", "priority"),
        {"group_id": None, "priority": None},
    ),
    "zendesk": KindSpec(
        "Zendesk",
        ZendeskClient,
        ("email",),
        ("api_token",),
        ("group_id", "priority", "tags"),
        {"group_id": None, "priority": "", "tags": []},
    ),
}


def build_client(
    kind: str,
    *,
    base_url: str,
    values: dict[str, Any],
    verify: bool | str = True,
    timeout: float = TIMEOUT_SECONDS,
) -> TicketClient:
    """Build the adapter for `kind` from the stored identity, secret and setting values."""
    spec = KINDS.get(kind)
    if spec is None:
        raise ItsmPermanentError(f"Unknown ticketing system {kind!r}.")
    kwargs: dict[str, Any] = dict(spec.defaults)
    for name in spec.identity_fields + spec.secret_fields + spec.setting_fields:
        if name in values and values[name] not in (None, ""):
            kwargs[name] = values[name]
    return spec.client(base_url=base_url, verify=verify, timeout=timeout, **kwargs)
