"""Local stand-ins for Jira, ServiceNow, Freshservice and Zendesk used by the test suite and the benchmark.

Each fake speaks the vendor's documented wire format: it checks the path, method, basic-auth header and the
body fields the vendor requires, answers with the vendor's JSON shapes (including its error bodies), and keeps
the tickets it created so callers can inspect them. Failures can be queued to simulate outages: an error
answer, a stall (answer late, then carry the request out), a hang (never carry it out) and a late answer
(carry the request out at once, answer after the client has given up).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers or {}, content_type="application/json")


def basic_auth(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    auth: tuple[str, str] | None
    body: Any


@dataclass
class QueuedFailure:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # "before": wait, then handle the request; "after": handle it, then wait before answering;
    # "instead": wait, then answer `status` without handling it.
    when: str = "before"


Route = tuple[str, re.Pattern[str], Callable[..., Response]]


class FakeVendor:
    """Shared plumbing: request log, auth check, failure queue, routing."""

    kind = ""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.tickets: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[str]] = defaultdict(list)
        self._failures: deque[QueuedFailure] = deque()
        self._ids = itertools.count(1)
        self.base_url = ""
        self.routes: list[Route] = []

    # configuration ---------------------------------------------------------------------------------------

    def install(self, httpserver, *, base_url: str | None = None) -> FakeVendor:
        self.base_url = (base_url or httpserver.url_for("/")).rstrip("/")
        httpserver.expect_request(re.compile(r"/.*")).respond_with_handler(self.dispatch)
        return self

    def fail_next(
        self, status: int, body: Any = None, *, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        for _ in range(times):
            self._failures.append(QueuedFailure(status, body, headers or {}))

    def stall_next(self, seconds: float, *, times: int = 1) -> None:
        """Answer the next requests only after `seconds`, to make clients time out."""
        for _ in range(times):
            self._failures.append(QueuedFailure(0, None, delay=seconds))

    def answer_late_next(self, seconds: float, *, times: int = 1) -> None:
        """Carry out the next requests at once but answer only after `seconds`: the ticket exists while
        the client has already timed out."""
        for _ in range(times):
            self._failures.append(QueuedFailure(0, None, delay=seconds, when="after"))

    def hang_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next requests for `seconds` without carrying them out, then answer 504."""
        for _ in range(times):
            self._failures.append(
                QueuedFailure(504, {"error": "gateway timeout"}, delay=seconds, when="instead")
            )

    def calls(self, method: str, pattern: str) -> list[RecordedRequest]:
        rx = re.compile(pattern)
        return [r for r in self.requests if r.method == method and rx.fullmatch(r.path)]

    # vendor-specific hooks -------------------------------------------------------------------------------

    def authorized(self, auth: tuple[str, str] | None) -> bool:
        raise NotImplementedError

    def unauthorized(self) -> Response:
        raise NotImplementedError

    def not_found(self) -> Response:
        return json_response({"error": "not found"}, 404)

    # dispatch --------------------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        body: Any = None
        if request.data:
            try:
                body = json.loads(request.data)
            except ValueError:
                body = request.get_data(as_text=True)
        auth = basic_auth(request)
        with self.lock:
            self.requests.append(
                RecordedRequest(request.method, request.path, request.query_string.decode(), auth, body)
            )
            failure = self._failures.popleft() if self._failures else None
        if failure is not None and failure.when != "after":
            if failure.delay:
                time.sleep(failure.delay)
            if failure.when == "instead" or not failure.delay:
                return json_response(failure.body, failure.status, failure.headers)
        response = self.handle(request, body, auth)
        if failure is not None and failure.when == "after":
            time.sleep(failure.delay)
        return response

    def handle(self, request: Request, body: Any, auth: tuple[str, str] | None) -> Response:
        if not self.authorized(auth):
            return self.unauthorized()
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(request.path)
            if match and request.method == method:
                return handler(request, body, *match.groups())
        return self.not_found()

    def next_id(self) -> int:
        with self.lock:
            return next(self._ids)


class FakeJira(FakeVendor):
    """Jira Cloud REST API v2 (`/rest/api/2/...`), basic auth with e-mail and API token."""

    kind = "jira"
    STATUS = {"new": "To Do", "indeterminate": "In Progress", "done": "Done"}

    def __init__(
        self, *, email: str = "bot@example.com", api_token: str = "jira-token", project_key: str = "OPS"
    ):
        super().__init__()
        self.email, self.api_token, self.project_key = email, api_token, project_key
        self.routes = [
            ("GET", re.compile(r"/rest/api/2/myself"), self.myself),
            ("GET", re.compile(r"/rest/api/2/search/jql"), self.search),
            ("GET", re.compile(r"/rest/api/2/project/([^/]+)"), self.project),
            ("POST", re.compile(r"/rest/api/2/issue"), self.create),
            ("POST", re.compile(r"/rest/api/2/issue/([^/]+)/comment"), self.comment),
            ("GET", re.compile(r"/rest/api/2/issue/([^/]+)"), self.issue),
        ]

    def authorized(self, auth):
        return auth == (self.email, self.api_token)

    def unauthorized(self):
        return json_response(
            {
                "errorMessages": [
                    "You are not authenticated. Authentication required to perform this operation."
                ],
                "errors": {},
            },
            401,
        )

    def not_found(self):
        return json_response(
            {
                "errorMessages": ["Issue does not exist or you do not have permission to see it."],
                "errors": {},
            },
            404,
        )

    def set_status(self, key: str, category: str) -> None:
        self.tickets[key]["status"] = category

    def myself(self, request, body):
        return json_response(
            {
                "accountId": "5b10a2844c20165700ede21g",
                "emailAddress": self.email,
                "displayName": "Thalian Bot",
            }
        )

    def project(self, request, body, key):
        if key != self.project_key:
            return json_response(
                {"errorMessages": [f"No project could be found with key '{key}'."], "errors": {}}, 404
            )
        return json_response(
            {
                "id": "10000",
                "key": key,
                "name": "Operations",
                "self": f"{self.base_url}/rest/api/2/project/10000",
            }
        )

    def create(self, request, body):
        fields = (body or {}).get("fields") or {}
        errors = {}
        project = fields.get("project") or {}
        if project.get("key") != self.project_key and project.get("id") != "10000":
            errors["project"] = "Specify a valid project ID or key"
        issuetype = fields.get("issuetype") or {}
        if not (issuetype.get("name") or issuetype.get("id")):
            errors["issuetype"] = "Specify an issue type"
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if errors:
            return json_response({"errorMessages": [], "errors": errors}, 400)
        number = self.next_id()
        key = f"{self.project_key}-{number}"
        with self.lock:
            self.tickets[key] = {**fields, "id": str(10000 + number), "key": key, "status": "new"}
        return json_response(
            {
                "id": str(10000 + number),
                "key": key,
                "self": f"{self.base_url}/rest/api/2/issue/{10000 + number}",
            },
            201,
        )

    LABEL_JQL = re.compile(r'project = "([^"]+)" AND labels = "([^"]+)"')

    def search(self, request, body):
        """Enhanced JQL search: only the `project = "X" AND labels = "Y"` form Thalian sends is understood."""
        match = self.LABEL_JQL.match(request.args.get("jql", ""))
        if match is None:
            return json_response({"errorMessages": ["Error in the JQL Query."], "errors": {}}, 400)
        project, label = match.groups()
        found = [
            t for t in self.tickets.values() if t["key"].startswith(f"{project}-") and label in (t.get("labels") or [])
        ]
        limit = int(request.args.get("maxResults") or 50)
        issues = [
            {
                "id": t["id"],
                "key": t["key"],
                "self": f"{self.base_url}/rest/api/2/issue/{t['id']}",
                "fields": {
                    "status": {"name": self.STATUS[t["status"]], "statusCategory": {"key": t["status"]}}
                },
            }
            for t in found[:limit]
        ]
        return json_response({"issues": issues, "isLast": True})

    def comment(self, request, body, key):
        if key not in self.tickets:
            return self.not_found()
        if not (body or {}).get("body"):
            return json_response(
                {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}}, 400
            )
        with self.lock:
            self.comments[key].append(body["body"])
        return json_response(
            {
                "id": str(self.next_id()),
                "body": body["body"],
                "author": {"displayName": "Thalian Bot"},
                "created": "2026-01-01T00:00:00.000+0000",
            },
            201,
        )

    def issue(self, request, body, key):
        ticket = self.tickets.get(key)
        if ticket is None:
            return self.not_found()
        category = ticket["status"]
        return json_response(
            {
                "id": ticket["id"],
                "key": key,
                "self": f"{self.base_url}/rest/api/2/issue/{ticket['id']}",
                "fields": {"status": {"name": self.STATUS[category], "statusCategory": {"key": category}}},
            }
        )


class FakeServiceNow(FakeVendor):
    """ServiceNow Table API (`/api/now/table/<table>`), basic auth; must be served over https."""

    kind = "servicenow"

    def __init__(
        self, *, username: str = "thalian.api", password: str = "snow-pass", table: str = "incident"
    ):
        super().__init__()
        self.username, self.password, self.table = username, password, table
        self.routes = [
            ("GET", re.compile(r"/api/now/table/([a-z0-9_]+)"), self.list),
            ("POST", re.compile(r"/api/now/table/([a-z0-9_]+)"), self.create),
            ("GET", re.compile(r"/api/now/table/([a-z0-9_]+)/([0-9a-f]{32})"), self.get),
            ("PATCH", re.compile(r"/api/now/table/([a-z0-9_]+)/([0-9a-f]{32})"), self.patch),
            ("PUT", re.compile(r"/api/now/table/([a-z0-9_]+)/([0-9a-f]{32})"), self.patch),
        ]

    def authorized(self, auth):
        return auth == (self.username, self.password)

    def unauthorized(self):
        return json_response(
            {
                "error": {
                    "message": "User Not Authenticated",
                    "detail": "Required to provide Auth information",
                },
                "status": "failure",
            },
            401,
        )

    def not_found(self):
        return json_response(
            {
                "error": {
                    "message": "No Record found",
                    "detail": "Record doesn't exist or ACL restricts the record retrieval",
                },
                "status": "failure",
            },
            404,
        )

    def set_state(self, sys_id: str, state: str, *, active: bool = True) -> None:
        self.tickets[sys_id]["state"] = state
        self.tickets[sys_id]["active"] = "true" if active else "false"

    def _render(self, request: Request, record: dict[str, Any]) -> dict[str, Any]:
        if request.args.get("sysparm_display_value") == "all":
            return {k: {"value": v, "display_value": v} for k, v in record.items()}
        return dict(record)

    def _check_table(self, table):
        if table != self.table:
            return json_response(
                {"error": {"message": "Invalid table " + table, "detail": None}, "status": "failure"}, 400
            )
        return None

    def list(self, request, body, table):
        if (bad := self._check_table(table)) is not None:
            return bad
        limit = int(request.args.get("sysparm_limit") or 10000)
        records = list(self.tickets.values())
        # Encoded queries: only `field=value` terms joined by ^ (and ORDERBY terms, ignored) are understood.
        for term in (request.args.get("sysparm_query") or "").split("^"):
            name, equals, value = term.partition("=")
            if equals and not name.startswith("ORDERBY"):
                records = [r for r in records if r.get(name) == value]
        records = records[:limit]
        return json_response(
            {"result": [self._render(request, r) for r in records]},
            headers={"X-Total-Count": str(len(self.tickets))},
        )

    def create(self, request, body, table):
        if (bad := self._check_table(table)) is not None:
            return bad
        if request.headers.get("Content-Type", "").split(";")[0] != "application/json" or not isinstance(
            body, dict
        ):
            return json_response(
                {
                    "error": {
                        "message": "Exception while reading request",
                        "detail": "The payload is not valid JSON.",
                    },
                    "status": "failure",
                },
                400,
            )
        if not body.get("short_description"):
            return json_response(
                {
                    "error": {
                        "message": "Operation Failed",
                        "detail": "Data Policy Exception: Short description is mandatory",
                    },
                    "status": "failure",
                },
                403,
            )
        number = self.next_id()
        sys_id = uuid.uuid4().hex
        record = {
            **{k: str(v) for k, v in body.items()},
            "sys_id": sys_id,
            "number": f"INC{number:07d}",
            "state": "1",
            "active": "true",
            # journal fields always read back empty; their entries live in the activity stream
            "work_notes": "",
            "comments": "",
        }
        with self.lock:
            self.tickets[sys_id] = record
        return json_response({"result": self._render(request, record)}, 201)

    def get(self, request, body, table, sys_id):
        if (bad := self._check_table(table)) is not None:
            return bad
        record = self.tickets.get(sys_id)
        if record is None:
            return self.not_found()
        return json_response({"result": self._render(request, record)})

    def patch(self, request, body, table, sys_id):
        if (bad := self._check_table(table)) is not None:
            return bad
        record = self.tickets.get(sys_id)
        if record is None:
            return self.not_found()
        with self.lock:
            for name, value in (body or {}).items():
                if name in ("work_notes", "comments"):
                    if value:
                        self.comments[sys_id].append(str(value))
                else:
                    record[name] = str(value)
        return json_response({"result": self._render(request, record)})


class FakeFreshservice(FakeVendor):
    """Freshservice API v2 (`/api/v2/tickets`), basic auth with the API key as user name and "X"."""

    kind = "freshservice"

    def __init__(self, *, api_key: str = "fs-key"):
        super().__init__()
        self.api_key = api_key
        self.routes = [
            ("GET", re.compile(r"/api/v2/tickets"), self.list),
            ("GET", re.compile(r"/api/v2/tickets/filter"), self.filter),
            ("POST", re.compile(r"/api/v2/tickets"), self.create),
            ("GET", re.compile(r"/api/v2/tickets/(\d+)"), self.get),
            ("POST", re.compile(r"/api/v2/tickets/(\d+)/notes"), self.note),
        ]

    def authorized(self, auth):
        return auth == (self.api_key, "X")

    def unauthorized(self):
        return json_response(
            {"code": "invalid_credentials", "message": "You have to be logged in to perform this action."},
            401,
        )

    def not_found(self):
        return json_response(
            {"code": "access_denied", "message": "You are not authorized to perform this action."}, 404
        )

    def set_status(self, ticket_id: str, status: int) -> None:
        self.tickets[ticket_id]["status"] = status

    def list(self, request, body):
        per_page = int(request.args.get("per_page") or 30)
        return json_response({"tickets": list(self.tickets.values())[:per_page]})

    TAG_QUERY = re.compile(r"^\"tag:'([^']+)'\"$")

    def filter(self, request, body):
        """Filter tickets: only the `"tag:'<tag>'"` query Thalian sends is understood."""
        match = self.TAG_QUERY.match(request.args.get("query", ""))
        if match is None:
            return json_response(
                {
                    "description": "Validation failed",
                    "errors": [{"field": "query", "message": "Invalid query", "code": "invalid_value"}],
                },
                400,
            )
        found = [t for t in self.tickets.values() if match.group(1) in (t.get("tags") or [])]
        return json_response({"tickets": found, "total": len(found)})

    def create(self, request, body):
        body = body if isinstance(body, dict) else {}
        errors = []
        if not (body.get("email") or body.get("requester_id") or body.get("phone")):
            errors.append(
                {
                    "field": "requester_id",
                    "message": "Please fill at least 1 of email, phone, requester_id fields",
                    "code": "missing_field",
                }
            )
        for name in ("subject", "description"):
            if not body.get(name):
                errors.append(
                    {
                        "field": name,
                        "message": "It should not be blank as this is a mandatory field",
                        "code": "invalid_value",
                    }
                )
        if body.get("status") not in (2, 3, 4, 5):
            errors.append(
                {
                    "field": "status",
                    "message": "It should be one of these values: '2,3,4,5'",
                    "code": "missing_field",
                }
            )
        if body.get("priority") not in (1, 2, 3, 4):
            errors.append(
                {
                    "field": "priority",
                    "message": "It should be one of these values: '1,2,3,4'",
                    "code": "missing_field",
                }
            )
        if "group_id" in body and not isinstance(body["group_id"], int):
            errors.append(
                {
                    "field": "group_id",
                    "message": "Value set is of type String.It should be a/an Integer",
                    "code": "datatype_mismatch",
                }
            )
        if errors:
            return json_response({"description": "Validation failed", "errors": errors}, 400)
        ticket_id = self.next_id()
        ticket = {**body, "id": ticket_id, "type": "Incident", "requester_id": 1000 + ticket_id}
        with self.lock:
            self.tickets[str(ticket_id)] = ticket
        return json_response({"ticket": ticket}, 201)

    def get(self, request, body, ticket_id):
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return self.not_found()
        return json_response({"ticket": ticket})

    def note(self, request, body, ticket_id):
        if ticket_id not in self.tickets:
            return self.not_found()
        if not (body or {}).get("body"):
            return json_response(
                {
                    "description": "Validation failed",
                    "errors": [
                        {
                            "field": "body",
                            "message": "It should not be blank as this is a mandatory field",
                            "code": "invalid_value",
                        }
                    ],
                },
                400,
            )
        with self.lock:
            self.comments[ticket_id].append(body["body"])
        note = {
            "id": self.next_id(),
            "body": body["body"],
            "private": body.get("private", True),
            "ticket_id": int(ticket_id),
        }
        return json_response({"conversation": note}, 201)


class FakeZendesk(FakeVendor):
    """Zendesk Support API (`/api/v2/tickets.json`), basic auth with `<email>/token` and the API token."""

    kind = "zendesk"

    def __init__(self, *, email: str = "bot@example.com", api_token: str = "zd-token"):
        super().__init__()
        self.email, self.api_token = email, api_token
        self.routes = [
            ("GET", re.compile(r"/api/v2/users/me\.json"), self.me),
            ("GET", re.compile(r"/api/v2/tickets\.json"), self.list),
            ("POST", re.compile(r"/api/v2/tickets\.json"), self.create),
            ("GET", re.compile(r"/api/v2/tickets/(\d+)\.json"), self.get),
            ("PUT", re.compile(r"/api/v2/tickets/(\d+)\.json"), self.update),
        ]

    def authorized(self, auth):
        return auth == (f"{self.email}/token", self.api_token)

    def unauthorized(self):
        return json_response({"error": "Couldn't authenticate you"}, 401)

    def not_found(self):
        return json_response({"error": "RecordNotFound", "description": "Not found"}, 404)

    def set_status(self, ticket_id: str, status: str) -> None:
        self.tickets[ticket_id]["status"] = status

    def _ticket_json(self, ticket):
        return {k: v for k, v in ticket.items() if k != "comment"}

    def _audit(self, ticket_id, events):
        return {
            "id": self.next_id(),
            "ticket_id": ticket_id,
            "created_at": "2026-01-01T00:00:00Z",
            "author_id": 1,
            "events": events,
        }

    def list(self, request, body):
        """List tickets, optionally only those with `external_id`."""
        tickets = list(self.tickets.values())
        if "external_id" in request.args:
            tickets = [t for t in tickets if t.get("external_id") == request.args["external_id"]]
        return json_response(
            {"tickets": [self._ticket_json(t) for t in tickets], "next_page": None, "previous_page": None,
             "count": len(tickets)}
        )

    def me(self, request, body):
        return json_response({"user": {"id": 1, "name": "Thalian Bot", "email": self.email, "role": "agent"}})

    def create(self, request, body):
        ticket_in = (body or {}).get("ticket") if isinstance(body, dict) else None
        if not isinstance(ticket_in, dict):
            return json_response({"error": "InvalidEndpoint", "description": "Not found"}, 400)
        comment = ticket_in.get("comment") or {}
        if not (comment.get("body") or comment.get("html_body")):
            return json_response(
                {
                    "error": "RecordInvalid",
                    "description": "Record validation errors",
                    "details": {
                        "description": [
                            {"description": "Description: cannot be blank", "error": "BlankValue"}
                        ]
                    },
                },
                422,
            )
        if ticket_in.get("priority") not in (None, "low", "normal", "high", "urgent"):
            return json_response(
                {
                    "error": "RecordInvalid",
                    "description": "Record validation errors",
                    "details": {
                        "priority": [{"description": "Priority: is not valid", "error": "InvalidValue"}]
                    },
                },
                422,
            )
        ticket_id = self.next_id()
        ticket = {
            **{k: v for k, v in ticket_in.items() if k != "comment"},
            "id": ticket_id,
            "url": f"{self.base_url}/api/v2/tickets/{ticket_id}.json",
            "description": comment.get("body"),
            "status": "new",
            "comment": comment,
        }
        with self.lock:
            self.tickets[str(ticket_id)] = ticket
        events = [
            {
                "id": self.next_id(),
                "type": "Comment",
                "body": comment.get("body"),
                "public": comment.get("public", True),
            }
        ]
        return json_response(
            {"ticket": self._ticket_json(ticket), "audit": self._audit(ticket_id, events)}, 201
        )

    def get(self, request, body, ticket_id):
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return self.not_found()
        return json_response({"ticket": self._ticket_json(ticket)})

    def update(self, request, body, ticket_id):
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return self.not_found()
        ticket_in = (body or {}).get("ticket") or {}
        comment = ticket_in.get("comment") or {}
        with self.lock:
            if comment.get("body"):
                self.comments[ticket_id].append(comment["body"])
            for name, value in ticket_in.items():
                if name not in ("comment", "id"):
                    ticket[name] = value
        events = (
            [
                {
                    "id": self.next_id(),
                    "type": "Comment",
                    "body": comment.get("body"),
                    "public": comment.get("public", True),
                }
            ]
            if comment
            else []
        )
        return json_response(
            {"ticket": self._ticket_json(ticket), "audit": self._audit(int(ticket_id), events)}
        )


FAKES: dict[str, type[FakeVendor]] = {
    "jira": FakeJira,
    "servicenow": FakeServiceNow,
    "freshservice": FakeFreshservice,
    "zendesk": FakeZendesk,
}
