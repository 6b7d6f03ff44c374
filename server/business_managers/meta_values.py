"""Meta's business `verification_status`, converted once for the connection and the sync."""

from types import MappingProxyType

from server.business_managers.models import BusinessVerificationStatus

# Every value Meta documents for Business.verification_status, and the platform's status for it.
VERIFICATION_STATUSES: MappingProxyType[str, BusinessVerificationStatus] = MappingProxyType(
    {
        "not_verified": BusinessVerificationStatus.NOT_VERIFIED,
        "pending": BusinessVerificationStatus.PENDING,
        "pending_submission": BusinessVerificationStatus.PENDING,
        "pending_need_more_info": BusinessVerificationStatus.PENDING,
        "verified": BusinessVerificationStatus.VERIFIED,
        "failed": BusinessVerificationStatus.FAILED,
        "rejected": BusinessVerificationStatus.FAILED,
        "revoked": BusinessVerificationStatus.FAILED,
        "expired": BusinessVerificationStatus.FAILED,
        "ineligible": BusinessVerificationStatus.FAILED,
    }
)


def verification_status_from_meta(value: str) -> BusinessVerificationStatus | None:
    """The platform's verification status for Meta's; None for a value Meta added since (the caller
    decides: the sync keeps what it had, a new connection starts NOT_VERIFIED)."""
    return VERIFICATION_STATUSES.get(value)
