"""Background build of large evidence packages."""

from celery import shared_task

from thalian import tenancy


# The registered name predates the evidence app; it is kept so builds already queued still run after an upgrade.
@shared_task(name="campaigns.build_evidence_package")
def build_evidence_package(organization_id: int, package_id: str) -> None:
    from .services import evidence_package_build

    with tenancy.scope(organization_id=organization_id):
        evidence_package_build(package_id=package_id)
