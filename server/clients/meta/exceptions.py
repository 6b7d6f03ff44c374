"""What can go wrong talking to Meta, as the task layer needs to tell it apart.

Every exception says whether retrying can help (`retryable`). The client itself never loops on a
retryable error: the task that called it retries with backoff (a rate limit says how long to wait in
`retry_after`). Graph's `code`, `error_subcode` and `fbtrace_id` are kept, since Meta support asks
for the trace id and the subcode tells e.g. an expired token from a changed password.
"""

from typing import ClassVar


class MetaError(Exception):
    """Root of the Meta client's errors."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        error_type: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id
        self.error_type = error_type
        self.http_status = http_status

    def __str__(self) -> str:
        details = [
            f"{name}={value}"
            for name, value in (
                ("code", self.code),
                ("subcode", self.subcode),
                ("http_status", self.http_status),
                ("fbtrace_id", self.fbtrace_id),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(details)})" if details else self.message


class MetaApiError(MetaError):
    """A Graph error that retrying will not fix (invalid parameter, unknown object, policy block...)."""


class MetaRateLimitError(MetaError):
    """Meta throttled the app, the business or the ad account; try again after `retry_after` seconds."""

    retryable: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        error_type: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            subcode=subcode,
            fbtrace_id=fbtrace_id,
            error_type=error_type,
            http_status=http_status,
        )
        self.retry_after = retry_after


class MetaTokenError(MetaError):
    """The system-user token is expired, revoked or invalid (code 190): a person has to issue a new one."""


class MetaPermissionError(MetaError):
    """The token lacks a permission or the business has no access to the object (codes 10, 200-299)."""


class MetaTransientError(MetaError):
    """Meta or the network failed in a way that usually passes: 5xx, codes 1/2, timeouts, dropped connections."""

    retryable: ClassVar[bool] = True


class MetaUnsupportedTimezoneError(MetaError):
    """The IANA time zone has no Meta `timezone_id` in `timezones.META_TIMEZONE_IDS`."""

    def __init__(self, timezone_name: str) -> None:
        super().__init__(f"time zone {timezone_name!r} has no Meta timezone_id mapping")
        self.timezone_name = timezone_name
