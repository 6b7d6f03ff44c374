"""What the background workers need from Meta's Graph API.

Every call takes the business's system-user token as `token`; the client holds no credentials.
Ids are Graph's: ad accounts as "act_<digits>", businesses, pixels and users as digits. Errors are
the exceptions in `exceptions.py`; none is retried here except a dropped connection, once.
"""

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from server.clients.meta.models import (
    MetaAccountTask,
    MetaAdAccount,
    MetaAdAccountReads,
    MetaBusiness,
    MetaPixel,
)


class IMetaClient(Protocol):
    async def get_business(self, business_id: str, *, token: str) -> MetaBusiness: ...

    async def create_ad_account(
        self,
        business_id: str,
        *,
        name: str,
        currency: str,
        timezone_name: str,
        token: str,
    ) -> MetaAdAccount:
        """Creates an ad account owned by the business and reads it back.

        Not idempotent on Meta's side: a task that may run twice looks for the account with
        `find_ad_accounts` first. Raises MetaUnsupportedTimezoneError before calling Meta when the
        zone has no Meta id.
        """
        ...

    async def find_ad_accounts(self, business_id: str, *, name: str, token: str) -> list[MetaAdAccount]:
        """The business's owned ad accounts named exactly `name` (usually none or one)."""
        ...

    async def get_ad_accounts(self, account_ids: Sequence[str], *, token: str) -> MetaAdAccountReads:
        """Reads many accounts in Graph batch calls (50 per call, a few calls at a time).

        An account that cannot be read lands in `errors`; a failed batch call raises. A token error
        raises, since every other call with that token would fail the same way.
        """
        ...

    def list_owned_ad_accounts(self, business_id: str, *, token: str) -> AsyncIterator[MetaAdAccount]:
        """Every ad account the business owns, page by page."""
        ...

    async def update_spend_cap(self, account_id: str, spend_cap_minor: int, *, currency: str, token: str) -> None:
        """Sets the spend cap, in the account currency's minor units (0 removes it).

        Graph takes the cap in whole currency units, so the account's `currency` is needed to convert.
        """
        ...

    async def assign_user(
        self,
        account_id: str,
        *,
        user_id: str,
        tasks: Sequence[MetaAccountTask],
        token: str,
    ) -> None:
        """Gives a business user these tasks on the account; repeating it sets the same tasks again."""
        ...

    async def unassign_user(self, account_id: str, *, user_id: str, token: str) -> None: ...

    async def create_pixel(self, business_id: str, *, name: str, token: str) -> MetaPixel:
        """Creates a pixel (dataset) owned by the business. Not idempotent: look in `list_owned_pixels` first."""
        ...

    def list_owned_pixels(self, business_id: str, *, token: str) -> AsyncIterator[MetaPixel]: ...

    async def share_pixel(self, pixel_id: str, *, account_id: str, business_id: str, token: str) -> None:
        """Shares the pixel with the ad account; `business_id` is the business that owns the pixel."""
        ...

    async def unshare_pixel(self, pixel_id: str, *, account_id: str, business_id: str, token: str) -> None: ...
