"""Audit evidence primitives: streamed CSV, Ed25519 signing, the decisions log of the hash chain,
the evidence ZIP with its signed manifest, and package verification.

This module holds no models and no queries, so a package can be verified on a machine that only has
Python and ``cryptography``; the Django-facing exports build on it.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import itertools
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# Cell text, canonical JSON and the decision hash belong to campaigns (decisions are chained as they are
# recorded); the package format below writes and verifies them.
from campaigns.hashchain import (
    GENESIS_HASH,
    canonical_json,
    decision_hash,
    neutralize_cell,
)

# --------------------------------------------------------------------------------------------------
# Streamed CSV
# --------------------------------------------------------------------------------------------------

CSV_CHUNK_SIZE = 64 * 1024
CSV_BATCH_ROWS = 500


def csv_stream(
    rows: Iterable[Sequence[Any]],
    *,
    header: Sequence[str] | None = None,
    chunk_size: int = CSV_CHUNK_SIZE,
    neutralize: bool = True,
    lineterminator: str = "\n",
) -> Iterator[bytes]:
    """Encode rows as UTF-8 CSV (RFC 4180 quoting, LF line ends), every cell neutralised (callers whose rows are
    already neutralised text pass ``neutralize=False``).

    Memory stays constant: one reusable ``StringIO`` buffer is filled up to ``chunk_size`` characters,
    yielded and emptied. The header (when given) is yielded on its own straight away so an HTTP client
    sees the first byte before the first database row arrives.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=lineterminator)
    if header is not None:
        writer.writerow(header)
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate(0)
    rows = iter(rows)
    # Rows go to the C writer in batches; a batch is small enough that the first rows still leave early.
    while batch := list(itertools.islice(rows, CSV_BATCH_ROWS)):
        if neutralize:
            batch = [[neutralize_cell(value) for value in row] for row in batch]
        writer.writerows(batch)
        if buffer.tell() >= chunk_size:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate(0)
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


class RowSpool:
    """Rows filed under keys while they stream past, read back per key in the order they were added.

    Everything goes to one temporary file (any number of keys, one file descriptor): each key collects its
    rows in a buffer appended to the file as one segment when it is full. Buffers are ``budget`` divided by the
    number of keys (at least ``MIN_SEGMENT``), so memory stays bounded whatever the number of keys, and adding a
    row is a dictionary look-up and an append (it runs once per item of a campaign).
    """

    MIN_SEGMENT = 1024

    def __init__(self, *, directory: str | os.PathLike[str] | None = None, budget: int = 16 * 1024 * 1024) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)
        self._budget = budget
        self._segment = budget
        self._buffers: dict[bytes, bytearray] = {}
        self._segments: dict[bytes, list[tuple[int, int]]] = {}
        self._end = 0
        self.rows = 0  # rows added in all, counted by the caller

    def __enter__(self) -> RowSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._buffers.clear()

    def add(self, key: bytes, row: bytes) -> None:
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = bytearray()
            self._segments[key] = []
            self._segment = max(self.MIN_SEGMENT, self._budget // len(self._buffers))
        buffer += row
        if len(buffer) >= self._segment:
            self._file.write(buffer)
            self._segments[key].append((self._end, len(buffer)))
            self._end += len(buffer)
            buffer.clear()

    def keys(self) -> list[bytes]:
        return list(self._buffers)

    def size(self, key: bytes | None = None) -> int:
        """Bytes filed under ``key`` (all keys without one)."""
        keys = [key] if key is not None else list(self._buffers)
        return sum(length for k in keys for _offset, length in self._segments.get(k, ())) + sum(
            len(self._buffers.get(k, b"")) for k in keys
        )

    def read(self, key: bytes) -> Iterator[bytes]:
        """The rows of ``key`` as byte chunks (one per segment)."""
        self._file.flush()
        for offset, length in self._segments.get(key, ()):
            yield os.pread(self._file.fileno(), length, offset)
        tail = self._buffers.get(key)
        if tail:
            yield bytes(tail)


# --------------------------------------------------------------------------------------------------
# Canonical JSON and signing
# --------------------------------------------------------------------------------------------------


class SigningKeyError(Exception):
    """The configured evidence signing key cannot be used."""


SIGNING_KEY_ENV = "EVIDENCE_SIGNING_KEY"
SIGNING_KEY_FILENAME = "evidence_signing_key.pem"


def parse_signing_key(value: str) -> Ed25519PrivateKey:
    """Read ``EVIDENCE_SIGNING_KEY``.

    Two forms are accepted:
    - a PEM PKCS#8 Ed25519 private key (``-----BEGIN PRIVATE KEY-----``), literal newlines or ``\\n``;
    - the 32-byte raw Ed25519 private key encoded in base64 (standard or URL-safe alphabet).
    """
    text = value.strip()
    if not text:
        raise SigningKeyError(f"{SIGNING_KEY_ENV} is empty")
    if text.startswith("-----BEGIN"):
        pem = text.replace("\\n", "\n").encode("ascii")
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(
                f"{SIGNING_KEY_ENV} is not a readable unencrypted PEM private key: {exc}"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(
                f"{SIGNING_KEY_ENV} holds a {type(key).__name__}, an Ed25519 key is required"
            )
        return key
    try:
        raw = base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
        )
    except ValueError as exc:
        raise SigningKeyError(f"{SIGNING_KEY_ENV} is neither PEM nor base64") from exc
    if len(raw) != 32:
        raise SigningKeyError(f"{SIGNING_KEY_ENV} decodes to {len(raw)} bytes, a raw Ed25519 key is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_or_create_key_file(path: Path) -> Ed25519PrivateKey:
    """Read the key kept at ``path``; create it (mode 0600) on first use.

    Creation is race-free: the key is written to a private temporary file and hard-linked into place,
    which fails if another process got there first, in which case that process's key is used.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".evidence-key-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(private_key_pem(Ed25519PrivateKey.generate()))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp_name, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp_name)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise SigningKeyError(f"{path} is not a readable PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, an Ed25519 key is required")
    return key


def resolve_signing_key(*, env_value: str | None, data_dir: str | Path | None) -> Ed25519PrivateKey:
    """The environment key when set, otherwise the key kept in ``data_dir`` (generated once)."""
    if env_value:
        return parse_signing_key(env_value)
    if data_dir is None:
        raise SigningKeyError(f"{SIGNING_KEY_ENV} is not set and there is no data directory to keep a key in")
    return load_or_create_key_file(Path(data_dir) / SIGNING_KEY_FILENAME)


def get_signing_key() -> Ed25519PrivateKey:
    """The installation's signing key.

    ``EVIDENCE_SIGNING_KEY`` when set. Otherwise, in the embedded default (``DEBUG``) a key generated once
    and kept in ``settings.DATA_DIR``; with ``DEBUG`` off there is no fallback, because servers that do not
    share a data directory would each sign with a different key.
    """
    from django.conf import settings

    env_value = getattr(settings, "EVIDENCE_SIGNING_KEY", None) or os.environ.get(SIGNING_KEY_ENV)
    if not env_value and not settings.DEBUG:
        raise SigningKeyError(
            f"{SIGNING_KEY_ENV} is not set. With DEBUG=false evidence is signed only with a configured key: "
            "generate one with: openssl genpkey -algorithm ed25519"
        )
    return resolve_signing_key(env_value=env_value, data_dir=getattr(settings, "DATA_DIR", None))


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def key_fingerprint(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SigningKeyError(f"not a readable PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"the public key is a {type(key).__name__}, an Ed25519 key is required")
    return key


def sign(data: bytes, key: Ed25519PrivateKey) -> str:
    """Base64 (standard alphabet) Ed25519 signature of ``data``."""
    return base64.b64encode(key.sign(data)).decode("ascii")


# --------------------------------------------------------------------------------------------------
# Decision hash chain
# --------------------------------------------------------------------------------------------------

def decisions_log_rows(
    events: Iterable[tuple[str | None, str, dict[str, Any]]], *, columns: Sequence[str]
) -> Iterator[list[Any]]:
    """Rows of ``decisions_log.csv`` from ``(prev_hash, hash, fields)`` events in chain order.

    ``columns`` names the fields written (hashed ones and any context); the header is
    ``[*columns, "prev_hash", "hash"]``.
    """
    for prev_hash, hash_, fields in events:
        yield [fields.get(name) for name in columns] + [prev_hash or GENESIS_HASH, hash_]


def decisions_log_header(columns: Sequence[str]) -> list[str]:
    return [*columns, "prev_hash", "hash"]


@dataclass
class ChainCheck:
    head: str = GENESIS_HASH
    count: int = 0
    problems: list[str] = field(default_factory=list)


def check_chain(
    reader: Iterable[dict[str, str]],
    *,
    hashed_columns: Sequence[str] | None = None,
    file_name: str = "decisions_log.csv",
) -> ChainCheck:
    """Recompute the chain over log rows (dicts as read by ``csv.DictReader``).

    ``hashed_columns`` names the columns covered by each hash (the manifest's ``decisions_log_hashed_columns``);
    without it every column except ``prev_hash`` and ``hash`` is.
    """
    result = ChainCheck()
    expected_prev = GENESIS_HASH
    for line_no, row in enumerate(reader, start=2):
        result.count += 1
        if "prev_hash" not in row or "hash" not in row:
            result.problems.append(f"{file_name}: header has no prev_hash/hash columns")
            return result
        if None in row:
            result.problems.append(f"{file_name} line {line_no}: more cells than header columns")
        prev_hash = row["prev_hash"] or GENESIS_HASH
        if hashed_columns is None:
            fields = {k: v for k, v in row.items() if k not in ("prev_hash", "hash") and k is not None}
        else:
            missing = [name for name in hashed_columns if name not in row]
            if missing:
                result.problems.append(f"{file_name}: hashed columns {missing} are missing from the header")
                return result
            fields = {name: row[name] for name in hashed_columns}
        if prev_hash != expected_prev:
            result.problems.append(
                f"{file_name} line {line_no}: prev_hash is {prev_hash} but the previous decision's hash is "
                f"{expected_prev} (a decision was removed, reordered or inserted before this line)"
            )
        recomputed = decision_hash(prev_hash, fields)
        if recomputed != row["hash"]:
            result.problems.append(
                f"{file_name} line {line_no}: hash is {row['hash']} but the row's contents hash to {recomputed} "
                "(the decision was edited)"
            )
        expected_prev = row["hash"]
    result.head = expected_prev
    return result


# --------------------------------------------------------------------------------------------------
# Evidence ZIP
# --------------------------------------------------------------------------------------------------

MANIFEST_NAME = "manifest.json"
CHECKSUMS_NAME = "SHA256SUMS"
DECISIONS_LOG_NAME = "decisions_log.csv"
MANIFEST_FORMAT = "thalian-evidence/1"
ZIP_FLUSH_SIZE = 256 * 1024
# Deflate level of every member: level 1 compresses CSV text about 2.5 times faster than the default 6, for
# files about a quarter larger; a package of a million items is mostly CSV, so its build time is mostly this.
ZIP_COMPRESS_LEVEL = 1

Entry = tuple[str, Iterable[bytes]]


@dataclass
class FileRecord:
    name: str
    sha256: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


@dataclass
class PackageResult:
    """Filled in while a package is written; complete once the generator is exhausted."""

    files: list[FileRecord] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    sha256: str = ""
    size: int = 0
    complete: bool = False


class _ChunkSink:
    """Write-only, unseekable target for ``zipfile``: collects bytes until drained, hashing as it goes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pending = 0
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        data = bytes(data)
        self._parts.append(data)
        self._pending += len(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    @property
    def pending(self) -> int:
        return self._pending

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self._pending = 0
        return data


def _checked_name(name: str, seen: set[str]) -> str:
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise ValueError(f"evidence file name {name!r} is not a plain relative path")
    if name in (MANIFEST_NAME, CHECKSUMS_NAME):
        raise ValueError(f"evidence file name {name!r} is reserved")
    if name in seen:
        raise ValueError(f"evidence file name {name!r} is used twice")
    seen.add(name)
    return name


def checksums_text(files: Iterable[FileRecord]) -> bytes:
    """``sha256sum -c`` compatible listing (two spaces, text mode)."""
    return "".join(f"{record.sha256}  {record.name}\n" for record in files).encode("utf-8")


def build_manifest(
    *, files: Sequence[FileRecord], fields: dict[str, Any], signing_key: Ed25519PrivateKey
) -> dict[str, Any]:
    """The manifest: ``fields`` plus the file list, the format, the key fingerprint and the signature.

    The signature is over ``canonical_json`` of the manifest without its ``signature`` key.
    """
    reserved = {"files", "format", "signature", "signature_algorithm", "public_key_fingerprint"}
    clash = reserved & fields.keys()
    if clash:
        raise ValueError(f"manifest fields {sorted(clash)} are set by the package writer")
    body = {
        **fields,
        "format": MANIFEST_FORMAT,
        "files": [record.as_dict() for record in files],
        "signature_algorithm": "Ed25519",
        "public_key_fingerprint": key_fingerprint(signing_key),
    }
    return {**body, "signature": sign(canonical_json(body), signing_key)}


def stream_package(
    entries: Iterable[Entry],
    *,
    manifest_fields: dict[str, Any] | Callable[[], dict[str, Any]],
    signing_key: Ed25519PrivateKey,
    result: PackageResult | None = None,
    flush_size: int = ZIP_FLUSH_SIZE,
    progress: Callable[[str], None] | None = None,
) -> Iterator[bytes]:
    """Yield the bytes of an evidence ZIP as it is written.

    ``entries`` are ``(name, byte chunks)`` pairs consumed lazily, one at a time. Each file's SHA-256
    and size are computed from the bytes written. After the last entry come ``SHA256SUMS`` and
    ``manifest.json``. ``manifest_fields`` may be a callable, evaluated after every entry was written
    (so values such as the chain head can be collected while writing). ``result`` receives the file
    records, the manifest and the SHA-256 and size of the archive itself.
    """
    result = result if result is not None else PackageResult()
    sink = _ChunkSink()
    seen: set[str] = set()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_COMPRESS_LEVEL) as archive:
        for name, chunks in entries:
            name = _checked_name(name, seen)
            if progress is not None:
                progress(name)
            digest = hashlib.sha256()
            size = 0
            # force_zip64: the size is unknown until the end and a large campaign may pass 4 GiB.
            with archive.open(name, mode="w", force_zip64=True) as member:
                for chunk in chunks:
                    if not chunk:
                        continue
                    digest.update(chunk)
                    size += len(chunk)
                    member.write(chunk)
                    if sink.pending >= flush_size:
                        yield sink.drain()
            result.files.append(FileRecord(name=name, sha256=digest.hexdigest(), size=size))
            if sink.pending:
                yield sink.drain()
        checksums = checksums_text(result.files)
        archive.writestr(CHECKSUMS_NAME, checksums)
        result.files.append(
            FileRecord(name=CHECKSUMS_NAME, sha256=hashlib.sha256(checksums).hexdigest(), size=len(checksums))
        )
        fields = manifest_fields() if callable(manifest_fields) else manifest_fields
        manifest = build_manifest(files=result.files, fields=fields, signing_key=signing_key)
        archive.writestr(
            MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
        result.manifest = manifest
    yield sink.drain()
    result.sha256 = sink.digest.hexdigest()
    result.size = sink.size
    result.complete = True


def write_package(target: Any, entries: Iterable[Entry], **kwargs: Any) -> PackageResult:
    """Write an evidence ZIP to a binary file object; see ``stream_package`` for the arguments."""
    result = PackageResult()
    for chunk in stream_package(entries, result=result, **kwargs):
        target.write(chunk)
    return result


# --------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------


def _hash_member(archive: zipfile.ZipFile, name: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with archive.open(name) as member:
        while chunk := member.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _default_public_key() -> Ed25519PublicKey:
    return get_signing_key().public_key()


def verify_package(
    path: str | os.PathLike[str] | Any, public_key_pem: str | bytes | None = None
) -> list[str]:
    """Check an evidence package; an empty list means it is intact and signed by the expected key.

    Checks every file against the manifest (presence, SHA-256, size, nothing unlisted), the decision
    chain recomputed from ``decisions_log.csv`` against the manifest's ``chain_head`` and
    ``decision_count``, and the Ed25519 signature. Without ``public_key_pem`` the installation's own
    key is used. Each problem is one sentence naming the file and what differs.
    """
    problems: list[str] = []
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [f"cannot open the package as a ZIP archive: {exc}"]
    with archive:
        names = archive.namelist()
        duplicates = sorted({name for name in names if names.count(name) > 1})
        for name in duplicates:
            problems.append(f"{name} appears more than once in the archive")
        if MANIFEST_NAME not in names:
            return [*problems, f"{MANIFEST_NAME} is missing from the archive"]
        try:
            manifest = json.loads(archive.read(MANIFEST_NAME).decode("utf-8"))
        except (ValueError, zipfile.BadZipFile, zlib.error) as exc:
            return [*problems, f"{MANIFEST_NAME} cannot be read as JSON: {exc}"]
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
            return [*problems, f"{MANIFEST_NAME} has no 'files' list"]

        listed: set[str] = set()
        for entry in manifest["files"]:
            if not isinstance(entry, dict) or not {"name", "sha256", "size"} <= entry.keys():
                problems.append(f"{MANIFEST_NAME} has a file entry without name, sha256 and size: {entry!r}")
                continue
            name = entry["name"]
            listed.add(name)
            if name not in names:
                problems.append(f"{name} is listed in {MANIFEST_NAME} but missing from the archive")
                continue
            try:
                actual_sha, actual_size = _hash_member(archive, name)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                problems.append(f"{name} cannot be read from the archive: {exc}")
                continue
            if actual_sha != entry["sha256"]:
                problems.append(f"{name}: SHA-256 is {actual_sha}, {MANIFEST_NAME} says {entry['sha256']}")
            if actual_size != entry["size"]:
                problems.append(f"{name}: size is {actual_size} bytes, {MANIFEST_NAME} says {entry['size']}")
        for name in names:
            if name != MANIFEST_NAME and name not in listed:
                problems.append(f"{name} is in the archive but not listed in {MANIFEST_NAME}")

        if DECISIONS_LOG_NAME in names:
            try:
                with archive.open(DECISIONS_LOG_NAME) as raw:
                    text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                    hashed = manifest.get("decisions_log_hashed_columns")
                    chain = check_chain(
                        csv.DictReader(text), hashed_columns=hashed if isinstance(hashed, list) else None
                    )
            except (zipfile.BadZipFile, zlib.error, UnicodeDecodeError, csv.Error, EOFError) as exc:
                problems.append(f"{DECISIONS_LOG_NAME} cannot be read: {exc}")
            else:
                problems.extend(chain.problems)
                if "chain_head" not in manifest:
                    problems.append(f"{MANIFEST_NAME} has no chain_head")
                elif chain.head != manifest["chain_head"]:
                    problems.append(
                        f"{DECISIONS_LOG_NAME}: the last decision's hash is {chain.head}, "
                        f"{MANIFEST_NAME} chain_head is {manifest['chain_head']} "
                        "(decisions are missing at the end of the log, or it was altered)"
                    )
                if "decision_count" in manifest and chain.count != manifest["decision_count"]:
                    problems.append(
                        f"{DECISIONS_LOG_NAME} has {chain.count} decisions, "
                        f"{MANIFEST_NAME} decision_count is {manifest['decision_count']}"
                    )
        elif "chain_head" in manifest:
            problems.append(f"{DECISIONS_LOG_NAME} is missing but {MANIFEST_NAME} has a chain_head")

        problems.extend(_check_signature(manifest, public_key_pem))
    return problems


def _check_signature(manifest: dict[str, Any], public_key_pem: str | bytes | None) -> list[str]:
    signature = manifest.get("signature")
    if not isinstance(signature, str) or not signature:
        return [f"{MANIFEST_NAME} has no signature"]
    try:
        public_key = load_public_key(public_key_pem) if public_key_pem is not None else _default_public_key()
    except SigningKeyError as exc:
        return [f"the public key to verify with cannot be used: {exc}"]
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except ValueError:
        return [f"{MANIFEST_NAME} signature is not base64"]
    body = {key: value for key, value in manifest.items() if key != "signature"}
    try:
        public_key.verify(raw_signature, canonical_json(body))
    except InvalidSignature:
        expected = key_fingerprint(public_key)
        named = manifest.get("public_key_fingerprint")
        detail = (
            f"; the manifest names key {named}, not the expected key {expected} (re-signed with another key)"
            if named and named != expected
            else f" (the manifest was changed after signing, or signed by a key other than {expected})"
        )
        return [f"{MANIFEST_NAME} signature does not verify with public key {expected}{detail}"]
    return []
