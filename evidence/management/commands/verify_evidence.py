"""Verify an evidence package: every file hash, the decision chain and the manifest signature."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evidence.formats import (
    SigningKeyError,
    get_signing_key,
    key_fingerprint,
    load_public_key,
    verify_package,
)


class Command(BaseCommand):
    help = (
        "Check an evidence ZIP: each file against the SHA-256 and size in manifest.json, the decision "
        "hash chain in decisions_log.csv against the manifest's chain head, and the Ed25519 signature. "
        "Exits with status 1 and lists every problem when anything fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("package", help="path to the evidence .zip")
        parser.add_argument(
            "--public-key",
            dest="public_key",
            help="PEM file with the Ed25519 public key to verify against "
            "(default: this installation's key, as published at /api/v1/evidence/public-key)",
        )

    def handle(self, *args, **options):
        package = Path(options["package"])
        if not package.is_file():
            raise CommandError(f"{package} does not exist or is not a file")
        if options["public_key"]:
            key_path = Path(options["public_key"])
            try:
                pem = key_path.read_bytes()
                fingerprint = key_fingerprint(load_public_key(pem))
            except OSError as exc:
                raise CommandError(f"cannot read the public key {key_path}: {exc.strerror}") from exc
            except SigningKeyError as exc:
                raise CommandError(f"{key_path}: {exc}") from exc
        else:
            try:
                key = get_signing_key()
            except SigningKeyError as exc:
                raise CommandError(f"{exc}; or pass --public-key") from exc
            pem = None
            fingerprint = key_fingerprint(key)

        problems = verify_package(package, pem)
        if problems:
            for problem in problems:
                self.stderr.write(f"FAIL {problem}")
            noun = "problem" if len(problems) == 1 else "problems"
            raise CommandError(f"{package}: verification failed with {len(problems)} {noun}", returncode=1)
        self.stdout.write(
            f"OK {package}: every file matches manifest.json, the decision chain is intact and the "
            f"signature verifies with public key {fingerprint}"
        )
