import datetime as dt
import uuid

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, IdMixin, TimestampMixin
from server.users.models import Role

api_keys_roles = Table(
    "api_keys_roles",
    Base.metadata,
    Column("api_key_id", ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class ApiKey(IdMixin, TimestampMixin, Base):
    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(String(100))
    # The first characters of the key; looked up on every call, so unique and indexed.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    # sha256 of the whole key: keys are long random strings, so a fast hash is enough.
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[dt.datetime | None] = mapped_column()

    roles: Mapped[list[Role]] = relationship(secondary=api_keys_roles, lazy="selectin", order_by=Role.name)

    @property
    def role_names(self) -> list[str]:
        return [role.name for role in self.roles]
