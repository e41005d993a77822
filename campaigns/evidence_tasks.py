"""Background build of large evidence packages."""

from celery import shared_task

from thalian import tenancy


@shared_task(name="campaigns.build_evidence_package")
def build_evidence_package(organization_id: int, package_id: str) -> None:
    from .evidence_exports import evidence_package_build

    with tenancy.scope(organization_id=organization_id):
        evidence_package_build(package_id=package_id)
