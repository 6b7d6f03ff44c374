import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, utcnow


class RefreshToken(IdMixin, Base):
    """One refresh token. A Login starts a family; each RefreshToken spends one and adds the next.

    Access tokens name their family (`fam` claim), so revoking a family (Logout, reuse of a spent
    token, deactivation) also stops its access tokens at once.
    """

    __tablename__ = "refresh_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    # sha256 of the token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Indexed for the retention job (server.signin.retention), as is revoked_at.
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()

    __table_args__ = (
        Index("ix_refresh_tokens_revoked_at", "revoked_at", postgresql_where=text("revoked_at IS NOT NULL")),
    )
