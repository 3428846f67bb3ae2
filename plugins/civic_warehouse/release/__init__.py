"""Releasing the open marts to the city's open-data portal (CKAN, Socrata); see ``run``."""

import os

from civic_warehouse.release.run import Released, ReleaseError, release

# The portal's address: every portal in portal/releases.yml is reached through it.
PORTAL_URL_VARIABLE = "CITY_PORTAL_URL"


def portal_configured() -> bool:
    """Whether this deployment has an open-data portal to release to."""
    return bool(os.environ.get(PORTAL_URL_VARIABLE))


__all__ = ["PORTAL_URL_VARIABLE", "ReleaseError", "Released", "portal_configured", "release"]
