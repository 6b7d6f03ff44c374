import datetime as dt
import uuid

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, IdMixin, TimestampMixin


class ApiKeyRole(Base):
    """A system role an API key holds (roles are the users module's; this row names one by id)."""

    __tablename__ = "api_keys_roles"

    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True)


class ApiKey(IdMixin, TimestampMixin, Base):
    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(String(100))
    # The first characters of the key; looked up on every call, so unique and indexed.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    # sha256 of the whole key: keys are long random strings, so a fast hash is enough.
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[dt.datetime | None] = mapped_column()

    # Loaded with every key (selectin: one more query per statement, never one per row).
    role_links: Mapped[list[ApiKeyRole]] = relationship(lazy="selectin", cascade="all, delete-orphan")

    @property
    def role_ids(self) -> list[uuid.UUID]:
        return [link.role_id for link in self.role_links]
