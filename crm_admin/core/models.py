"""The tables the shared machinery stands on: departments, users, roles, the Casbin policy rows and the
small counters every process shares (``sys_meta``: the policy version, seeding marks…).

They live below the business modules because the permission gate, the principal and the data scope
(all in ``core``) read them on every request; the accounts module administers them (its pages, services
and sign-in), and keeps the tables only sign-in uses (sessions, lock-out counters).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    false,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_admin.core import limits  # noqa: F401  (installs the check that runs before every flush)
from crm_admin.db import Base, Timestamped

DATA_SCOPES = ("all", "dept_tree", "dept", "self")


class SysDept(Timestamped, Base):
    __tablename__ = "sys_dept"
    __resource__ = "dept"

    name: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("sys_dept.id"), index=True)
    leader_id: Mapped[int | None] = mapped_column(
        ForeignKey("sys_user.id", use_alter=True, name="fk_sys_dept_leader_id")
    )
    sort: Mapped[int] = mapped_column(Integer, default=0)

    parent: Mapped[SysDept | None] = relationship(remote_side="SysDept.id", lazy="raise")

    __table_args__ = (UniqueConstraint("parent_id", "name"),)

    def __str__(self) -> str:
        return self.name


class SysUser(Timestamped, Base):
    __tablename__ = "sys_user"
    __resource__ = "user"

    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    real_name: Mapped[str] = mapped_column(String(64), default="")
    dept_id: Mapped[int | None] = mapped_column(ForeignKey("sys_dept.id"), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(128))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None]
    last_failed_login_at: Mapped[dt.datetime | None]
    last_login_at: Mapped[dt.datetime | None]
    last_login_ip: Mapped[str | None] = mapped_column(String(64))
    # Bumped whenever roles, password or status change: stale sessions are refused on the next request.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    # Two-factor sign-in (accounts/second_factor.py): the TOTP secret, encrypted with a key derived from
    # the signing key (set while enrolling, before ``totp_enabled_at``); the last time step a code was
    # accepted for, so that a code is never accepted twice.
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enabled_at: Mapped[dt.datetime | None]
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    dept: Mapped[SysDept | None] = relationship(foreign_keys=[dept_id], lazy="raise")

    def __str__(self) -> str:
        return f"{self.real_name}({self.username})" if self.real_name else self.username


class SysRole(Timestamped, Base):
    __tablename__ = "sys_role"
    __resource__ = "role"

    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    data_scope: Mapped[str] = mapped_column(String(16), default="self")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    remark: Mapped[str | None] = mapped_column(String(255))
    # its users must sign in with a second factor (and enrol one before doing anything else)
    require_totp: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    def __str__(self) -> str:
        return self.name


class CasbinRule(Base):
    """Casbin policy storage (p: subject, resource, action; g: user, role). Binary collation on MySQL."""

    __tablename__ = "casbin_rule"
    __resource__ = "policy"

    id: Mapped[int] = mapped_column(primary_key=True)
    ptype: Mapped[str] = mapped_column(String(8))
    v0: Mapped[str] = mapped_column(String(100), default="")
    v1: Mapped[str] = mapped_column(String(100), default="")
    v2: Mapped[str] = mapped_column(String(100), default="")
    v3: Mapped[str] = mapped_column(String(100), default="")
    v4: Mapped[str] = mapped_column(String(100), default="")
    v5: Mapped[str] = mapped_column(String(100), default="")

    __table_args__ = (
        UniqueConstraint("ptype", "v0", "v1", "v2", "v3", "v4", "v5", name="uq_casbin_rule_line"),
        Index("ix_casbin_rule_v0", "v0"),
        {"mysql_collate": "utf8mb4_bin", "mysql_charset": "utf8mb4"},
    )

    def line(self) -> list[str]:
        values = [self.ptype, self.v0, self.v1, self.v2, self.v3, self.v4, self.v5]
        while values and values[-1] == "":
            values.pop()
        return values

    def __str__(self) -> str:
        return ", ".join(self.line())


class SysMeta(Base):
    """Small key/value counters shared by every process (e.g. ``policy_version``)."""

    __tablename__ = "sys_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


def bump_counter(conn: Connection, key: str) -> None:
    """Add one to the ``sys_meta`` counter ``key`` (made at 1 when missing), in the caller's transaction."""
    meta = SysMeta.metadata.tables["sys_meta"]
    updated = conn.execute(
        update(meta).where(meta.c.key == key).values(value=meta.c.value + 1)
    ).rowcount
    if not updated:
        conn.execute(meta.insert().values(key=key, value=1))


# the search index's grams compare byte for byte on MySQL/MariaDB (so a range on "t:华" is exact)
_BinaryText = String(40).with_variant(mysql.VARCHAR(40, collation="utf8mb4_bin"), "mysql", "mariadb")


class SearchDoc(Base):
    """What a searchable record can be found by, normalised (``core/search.py``)."""

    __tablename__ = "search_doc"

    kind: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    row_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    body: Mapped[str] = mapped_column(
        String(1024).with_variant(mysql.VARCHAR(1024, collation="utf8mb4_bin"), "mysql", "mariadb"))


class SearchGram(Base):
    """One gram of one searchable record; the primary key is the index (``core/search.py``)."""

    __tablename__ = "search_gram"
    __table_args__ = {"sqlite_with_rowid": False}

    kind: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    gram: Mapped[str] = mapped_column(_BinaryText, primary_key=True)
    row_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
