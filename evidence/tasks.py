"""Background build of large evidence packages, and the sweep of abandoned builds."""

from celery import shared_task

from thalian import claims, tenancy


# The registered name predates the evidence app; it is kept so builds already queued still run after an upgrade.
@shared_task(name="campaigns.build_evidence_package")
def build_evidence_package(organization_id: int, package_id: str) -> None:
    from .packages import BUILD_CLAIM, evidence_package_build

    with tenancy.scope(organization_id=organization_id), claims.claim_held(BUILD_CLAIM, package_id):
        evidence_package_build(package_id=package_id)


@shared_task(name="evidence.sweep_stale_packages")
def sweep_stale_evidence_packages() -> dict[str, int]:
    """Periodic: re-send or fail evidence builds nobody works on any more."""
    from .packages import evidence_packages_sweep

    return evidence_packages_sweep()
