"""Keyset pagination with signed, opaque page tokens.

A token carries the sort key of the last row of a page, the collection it belongs to and a
fingerprint of the filters, signed with SECRET_KEY: a modified token, or one replayed against
another collection or with different filters, is INVALID_ARGUMENT.
"""

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, Field

from server.exceptions import FieldViolation, InvalidRequestException

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class PageRequestSchema(BaseModel):
    """Base of every List request schema."""

    page_size: int = Field(default=0, ge=0)
    page_token: str = Field(default="", max_length=2048)

    def filters(self) -> dict[str, Any]:
        """What a page token is bound to: the list's filters (none unless a list has some)."""
        return {}

    @property
    def limit(self) -> int:
        """Rows in a page: 0 means the default, larger values are coerced to the maximum."""
        return min(self.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


class Identified(Protocol):
    """An item of a list ordered by its UUIDv7 id."""

    @property
    def id(self) -> uuid.UUID: ...


@dataclass(frozen=True)
class Page[T]:
    items: list[T]
    next_page_token: str


def _fingerprint(filters: Mapping[str, Any]) -> str:
    canonical = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class PageTokenCodec:
    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt="adplane.page-token")

    def encode(self, *, collection: str, filters: Mapping[str, Any], after: Sequence[str]) -> str:
        return str(self._serializer.dumps({"c": collection, "f": _fingerprint(filters), "k": list(after)}))

    async def page[R, T: Identified](
        self,
        query: PageRequestSchema,
        collection: str,
        *,
        fetch: Callable[[uuid.UUID | None, int], Awaitable[Sequence[R]]],
        convert: Callable[[R], T],
        filters: Mapping[str, Any] | None = None,
    ) -> Page[T]:
        """One page of a list ordered by a UUIDv7 id, the way every List RPC pages: decode the token
        (bound to the collection and to `filters`, by default the query's), fetch `limit + 1` rows
        after its id, convert the page's rows and sign the token of the next page."""
        filters = query.filters() if filters is None else filters
        after = self.decode(query.page_token, collection=collection, filters=filters)
        rows = await fetch(uuid.UUID(after[0]) if after else None, query.limit + 1)
        return paginate(
            rows,
            convert=convert,
            limit=query.limit,
            codec=self,
            collection=collection,
            filters=filters,
            sort_key=lambda item: [str(item.id)],
        )

    def decode(self, token: str, *, collection: str, filters: Mapping[str, Any]) -> list[str] | None:
        """The sort key to continue after, or None for the first page."""
        if not token:
            return None
        try:
            payload = self._serializer.loads(token)
        except BadSignature:
            raise _invalid_token("is malformed or was modified") from None
        if not isinstance(payload, dict) or payload.get("c") != collection:
            raise _invalid_token("belongs to another list")
        if payload.get("f") != _fingerprint(filters):
            raise _invalid_token("was issued for different filters; start again without a page_token")
        key = payload.get("k")
        if not isinstance(key, list) or not all(isinstance(part, str) for part in key):
            raise _invalid_token("is malformed or was modified")
        return key


def _invalid_token(why: str) -> InvalidRequestException:
    return InvalidRequestException(
        [FieldViolation(field="page_token", description=f"page token {why}", reason="INVALID_PAGE_TOKEN")]
    )


def paginate[R, T](
    rows: Sequence[R],
    *,
    convert: Callable[[R], T],
    limit: int,
    codec: PageTokenCodec,
    collection: str,
    filters: Mapping[str, Any],
    sort_key: Any,
) -> Page[T]:
    """Cut `rows` (fetched with limit + 1) into a page of converted items and the token of the
    next one. The extra row only tells that a next page exists: it is not converted."""
    items = [convert(row) for row in rows[:limit]]
    if len(rows) <= limit:
        return Page(items=items, next_page_token="")
    token = codec.encode(collection=collection, filters=filters, after=sort_key(items[-1]))
    return Page(items=items, next_page_token=token)
