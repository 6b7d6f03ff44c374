"""Etags: every versioned resource carries its version as the weak etag `W/"{version}"`.

A write that names an etag applies only at that version; a stale one, or one this platform never
issued (malformed), is a conflict the caller resolves by reading again. Each service raises its own
ConflictException subclass (its message names the resource), so parsing takes the exception to
raise from the caller:

    expected = version_of(data.etag, mismatch=lambda: AccountEtagMismatchException(account_id))
"""

import re
from collections.abc import Callable

from server.exceptions import ConflictException

_ETAG = re.compile(r'^W/"(\d{1,18})"$')


def etag_of(version: int) -> str:
    """The etag of a resource at `version`."""
    return f'W/"{version}"'


def version_of(etag: str, *, mismatch: Callable[[], ConflictException]) -> int | None:
    """The version `etag` names, or None for no etag (""): the write applies at any version.

    An etag `etag_of` could not have produced is stale by definition: `mismatch()` is raised.
    """
    if not etag:
        return None
    match = _ETAG.fullmatch(etag)
    if match is None:
        raise mismatch()
    return int(match.group(1))
