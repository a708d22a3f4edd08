"""Personal API tokens and the replay store of idempotent creates (``/api/v1``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_admin.db import Base, Timestamped


class ApiToken(Timestamped, Base):
    """A personal token: it acts as its user, with exactly the user's permissions and data scope.

    The secret (``crm_`` + 43 random URL-safe characters, 256 bits) is shown once when the token is
    made; only its SHA-256 is kept, so the table cannot be used to call the API. A token works while it
    is not revoked, not expired and its user is active."""

    __tablename__ = "api_token"
    __resource__ = "api_token"

    user_id: Mapped[int] = mapped_column(ForeignKey("sys_user.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # the first characters of the secret ("crm_AbCd"), so that a user can tell their tokens apart
    prefix: Mapped[str] = mapped_column(String(16), default="")
    expires_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    revoked_by: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))

    def __str__(self) -> str:
        return self.name


class ApiIdempotency(Base):
    """The answer given to a create sent with an ``Idempotency-Key``: the same key from the same user
    gets the same answer again instead of a second row. Kept for a day."""

    __tablename__ = "api_idempotency"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("sys_user.id"))
    idem_key: Mapped[str] = mapped_column(String(128))
    # method, path and body of the request, hashed: the same key with another request is refused
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)  # None while the first request runs
    response_body: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(String(255))
    etag: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(index=True)

    __table_args__ = (UniqueConstraint("user_id", "idem_key"),)
