import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, IdMixin, TimestampMixin, utcnow


class PixelAccount(Base):
    """A pixel shared with an ad account of the same workspace."""

    __tablename__ = "pixels_accounts"

    pixel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pixels.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Pixel(IdMixin, TimestampMixin, Base):
    __tablename__ = "pixels"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id"))
    business_manager_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("business_managers.id"))
    # Meta's pixel id; set once Meta created the pixel.
    meta_pixel_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    last_fired_at: Mapped[dt.datetime | None] = mapped_column()
    version: Mapped[int] = mapped_column(default=1)

    # Loaded for a whole page in one extra query (selectin), never per row.
    shares: Mapped[list[PixelAccount]] = relationship(lazy="selectin", order_by=PixelAccount.created_at)

    __table_args__ = (
        Index("ix_pixels_workspace_id_id", "workspace_id", "id"),
        Index("ix_pixels_business_manager_id_id", "business_manager_id", "id"),
    )

    @property
    def account_ids(self) -> list[uuid.UUID]:
        return [share.account_id for share in self.shares]
