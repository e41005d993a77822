import io

import pytest

from entitlements.csv_import import CsvReader, ImportValidationError, RowError, copy_escape, copy_lines

APPS = {"Salesforce": 1, "GitHub": 2}


def reader(kind, text, **kwargs):
    data = text.encode("utf-8") if isinstance(text, str) else text
    if kind == "entitlements":
        kwargs.setdefault("applications", APPS)
    return CsvReader(kind=kind, stream=io.BytesIO(data), **kwargs)


def read_all(kind, text, **kwargs):
    r = reader(kind, text, **kwargs)
    return list(r.rows()), r.errors


def test_entitlement_rows_are_normalized():
    rows, errors = read_all(
        "entitlements",
        "application,identity_email,role,last_used,comment\n"
        "salesforce, Ann@Example.COM ,Admin,2026-03-01,ignored\n"
        "GitHub,bob@example.com,member,2026-03-01T10:30:00+02:00,\n"
        "GitHub,cid@example.com,member,,\n",
    )
    assert errors == []
    assert rows == [
        (2, 1, "ann@example.com", "Admin", "2026-03-01T00:00:00+00:00"),
        (3, 2, "bob@example.com", "member", "2026-03-01T10:30:00+02:00"),
        (4, 2, "cid@example.com", "member", None),
    ]


def test_utf8_bom_and_header_case_are_accepted():
    rows, errors = read_all("identities", "\ufeffEMAIL,Name,Department,Manager_Email,Kind,Status\na@x.io,Zoë,R&D,,,\n")
    assert errors == []
    assert rows == [(2, "a@x.io", "Zoë", "R&D", "", None, "human", "active")]


def test_identity_optional_title_and_explicit_values():
    rows, errors = read_all(
        "identities",
        "email,name,department,manager_email,kind,status,title\n"
        "svc@x.io,Deploy bot,Eng,boss@x.io,service_account,terminated,Robot\n",
    )
    assert errors == []
    assert rows == [(2, "svc@x.io", "Deploy bot", "Eng", "boss@x.io", "Robot", "service_account", "terminated")]


def test_identity_errors_name_row_and_column():
    _, errors = read_all(
        "identities",
        "email,name,department,manager_email,kind,status\n"
        "not-an-email,A,,,human,active\n"
        "b@x.io,B,,b@x.io,robot,active\n"
        "c@x.io,C,,,human,fired\n"
        ",D,,,human,active\n",
    )
    assert errors == [
        RowError(2, "email", "'not-an-email' is not a valid e-mail address"),
        RowError(3, "manager_email", "an identity cannot be its own manager"),
        RowError(3, "kind", "unknown kind 'robot'; expected one of: human, service_account, bot, ai_agent"),
        RowError(4, "status", "unknown status 'fired'; expected one of: active, terminated, unknown"),
        RowError(5, "email", "is required"),
    ]


def test_application_sanctioned_values():
    rows, errors = read_all(
        "applications",
        "name,category,sanctioned,owner_email\nA,CRM,yes,o@x.io\nB,,0,\nC,Dev,maybe,o@x.io\n",
    )
    assert [r[:4] for r in rows] == [(2, "A", "CRM", True), (3, "B", "", False)]
    assert errors == [RowError(4, "sanctioned", "'maybe' is not one of true/false/yes/no/1/0")]


def test_entitlement_errors():
    _, errors = read_all(
        "entitlements",
        "application,identity_email,role,last_used\n"
        "Workday,a@x.io,member,\n"
        "GitHub,a@x.io,,\n"
        "GitHub,a@x.io,member,last tuesday\n"
        "GitHub,a@x.io\n",
    )
    assert errors == [
        RowError(2, "application", "unknown application 'Workday'; import it first"),
        RowError(3, "role", "is required"),
        RowError(4, "last_used", "'last tuesday' is not an ISO 8601 date or date-time"),
        RowError(5, "", "row has 2 fields, the header has 4"),
    ]


def test_missing_header_columns_fail_before_any_row():
    with pytest.raises(ImportValidationError) as excinfo:
        reader("entitlements", "application,email,role\nGitHub,a@x.io,member\n")
    assert [e.as_dict() for e in excinfo.value.errors] == [
        {
            "row": 1,
            "column": "identity_email,last_used",
            "message": "missing column(s) identity_email, last_used in the header; "
            "entitlements files need application,identity_email,role,last_used",
        }
    ]


def test_empty_file_needs_a_header():
    with pytest.raises(ImportValidationError, match="header row is required"):
        reader("applications", "")


def test_not_utf8_names_the_row():
    data = b"name,category,sanctioned,owner_email\nA,CRM,yes,\n" + "Café,CRM,yes,\n".encode("latin-1")
    with pytest.raises(ImportValidationError) as excinfo:
        read_all("applications", data)
    assert excinfo.value.errors == [RowError(3, "", "file is not valid UTF-8 (byte 0xe9); save it as CSV UTF-8")]


def test_utf16_file_is_refused():
    with pytest.raises(ImportValidationError, match="UTF-16"):
        reader("applications", "name,category,sanctioned,owner_email\n".encode("utf-16"))


def test_size_limit_known_up_front_and_while_streaming():
    text = "name,category,sanctioned,owner_email\n" + "A,CRM,yes,\n" * 1000
    with pytest.raises(ImportValidationError, match="over the 100 bytes size limit"):
        reader("applications", text, max_bytes=100, size=len(text))
    with pytest.raises(ImportValidationError, match="over the 2000 bytes size limit"):
        read_all("applications", text, max_bytes=2000)


def test_nul_bytes_are_refused():
    with pytest.raises(ImportValidationError, match="NUL bytes"):
        read_all("applications", b"name,category,sanctioned,owner_email\nA\x00,CRM,yes,\n")


def test_errors_are_capped_at_100_but_all_counted():
    text = "application,identity_email,role,last_used\n" + "GitHub,bad,member,\n" * 250
    r = reader("entitlements", text)
    assert list(r.rows()) == []
    assert len(r.errors) == 100
    assert r.error_total == 250
    assert r.errors[-1].row == 101


def test_blank_lines_and_trailing_empty_cells_are_tolerated():
    rows, errors = read_all("entitlements", "application,identity_email,role,last_used\n\nGitHub,a@x.io,member,,,\n")
    assert errors == []
    assert rows == [(3, 2, "a@x.io", "member", None)]


def test_extra_values_beyond_the_header_are_an_error():
    _, errors = read_all("entitlements", "application,identity_email,role,last_used\nGitHub,a@x.io,member,,oops\n")
    assert errors == [RowError(2, "", "row has 5 fields, the header has 4 (unquoted comma?)")]


def test_quoted_values_with_commas_and_newlines():
    rows, errors = read_all(
        "identities",
        'email,name,department,manager_email,kind,status\n"a@x.io","Doe, Jane","Sales\nEMEA",,,\nb@x.io,B,,,,\n',
    )
    assert errors == []
    assert [r[:4] for r in rows] == [(2, "a@x.io", "Doe, Jane", "Sales\nEMEA"), (3, "b@x.io", "B", "")]


def test_unknown_kind():
    with pytest.raises(ImportValidationError, match="unknown kind 'users'"):
        CsvReader(kind="users", stream=io.BytesIO(b"a\n"))


def test_copy_text_escaping():
    assert copy_escape(None) == "\\N"
    assert copy_escape(True) == "t"
    assert copy_escape("a\tb\\c\nd") == "a\\tb\\\\c\\nd"
    blocks = list(copy_lines(iter([(1, "x", None), (2, "y\tz", False)]), batch=1))
    assert blocks == ["1\tx\t\\N\n", "2\ty\\tz\tf\n"]
