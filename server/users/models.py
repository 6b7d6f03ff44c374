from sqlalchemy import Column, ForeignKey, Index, String, Table, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, IdMixin, TimestampMixin

users_roles = Table(
    "users_roles",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Role(IdMixin, Base):
    """A system role: a named set of system permissions (seeded by migrations)."""

    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(50), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    permissions: Mapped[list[str]] = mapped_column(ARRAY(String(100)), default=list)


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"

    # Stored lower-cased; unique.
    email: Mapped[str] = mapped_column(String(254))
    full_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    is_superuser: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    version: Mapped[int] = mapped_column(default=1)

    roles: Mapped[list[Role]] = relationship(secondary=users_roles, lazy="selectin", order_by=Role.name)

    __table_args__ = (Index("uq_users_email", func.lower(text("email")), unique=True),)

    @property
    def role_names(self) -> list[str]:
        return [role.name for role in self.roles]
