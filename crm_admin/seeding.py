"""Idempotent seeding: roles, dictionaries, the shipped policy, and the initial administrator.

The database is the source of truth once seeded: a shipped policy line is added once, so an
administrator who later removes it does not see it come back; nothing existing is overwritten.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_admin.accounts.models import CasbinRule, SysMeta, SysRole, SysUser
from crm_admin.accounts.service import create_user
from crm_admin.core.audit import SEAL_KEY
from crm_admin.core.permissions import bump_policy_version
from crm_admin.dictionary.models import DictItem, DictType

ROOT = Path(__file__).resolve().parent.parent
SEED_DIR = ROOT / "seed"
POLICY_DIR = ROOT / "policies"


@dataclass
class SeedReport:
    roles: int = 0
    dict_types: int = 0
    dict_items: int = 0
    policy_lines: int = 0
    admin_password: str | None = None
    notes: list[str] = field(default_factory=list)


def read_policy_lines(paths: list[Path] | None = None) -> list[list[str]]:
    lines: list[list[str]] = []
    for path in paths or sorted(POLICY_DIR.glob("*.csv")):
        for raw in path.read_text(encoding="utf-8-sig").splitlines():
            raw = raw.strip()
            if not raw or raw.startswith("#"):
                continue
            lines.append([part.strip() for part in raw.split(",")])
    return lines


def _meta_flag(session: Session, key: str) -> bool:
    return session.get(SysMeta, key) is not None


def generate_password() -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(14))
        if any(c.isdigit() for c in pw) and any(c.isalpha() for c in pw):
            return pw


def seed(session: Session, *, admin_password: str | None = None) -> SeedReport:
    report = SeedReport()
    for key in ("policy_version", SEAL_KEY):
        if session.get(SysMeta, key) is None:
            session.add(SysMeta(key=key, value=0))
    session.flush()

    roles = json.loads((SEED_DIR / "roles.json").read_text(encoding="utf-8"))
    existing_roles = set(session.execute(select(SysRole.code)).scalars())
    for role in roles:
        if role["code"] not in existing_roles:
            session.add(SysRole(code=role["code"], name=role["name"], data_scope=role["data_scope"],
                                remark=role.get("remark")))
            report.roles += 1

    dicts = json.loads((SEED_DIR / "dictionaries.json").read_text(encoding="utf-8"))
    existing_types = set(session.execute(select(DictType.code)).scalars())
    existing_items = {tuple(row) for row in session.execute(select(DictItem.type_code, DictItem.value))}
    for dtype in dicts:
        if dtype["code"] not in existing_types:
            session.add(DictType(code=dtype["code"], name=dtype["name"]))
            report.dict_types += 1
        session.flush()
        for sort, (value, label, label_en) in enumerate(dtype["items"], start=1):
            if (dtype["code"], value) not in existing_items:
                session.add(DictItem(type_code=dtype["code"], value=value, label=label,
                                     label_en=label_en, sort=sort * 10))
                report.dict_items += 1
    session.flush()

    # a permission is present whatever scope an administrator has since given it
    present = {tuple(r.line()[:4]) for r in session.execute(select(CasbinRule)).scalars()}
    defaults = {code: scope for code, scope in session.execute(select(SysRole.code, SysRole.data_scope))}
    for line in read_policy_lines():
        digest = hashlib.sha1(",".join(line).encode("utf-8"), usedforsecurity=False).hexdigest()  # a key
        key = f"seeded:{digest}"
        if _meta_flag(session, key):
            continue
        if tuple(line[:4]) not in present:
            if line[0] == "p" and len(line) == 4:  # the role's default scope, written on the line
                line = [*line, "all" if "*" in line[2:4] else defaults.get(line[1].removeprefix("role:"), "self")]
            values = [*line[1:], "", "", "", "", "", ""][:6]
            session.add(CasbinRule(ptype=line[0], v0=values[0], v1=values[1], v2=values[2],
                                   v3=values[3], v4=values[4], v5=values[5]))
            report.policy_lines += 1
        session.add(SysMeta(key=key, value=1))
    session.flush()
    if report.policy_lines or report.roles:
        bump_policy_version(session.connection())

    has_admin = session.execute(
        select(CasbinRule.id).where(CasbinRule.ptype == "g", CasbinRule.v1 == "role:admin").limit(1)
    ).first()
    if not has_admin and session.execute(
        select(SysUser.id).where(SysUser.username == "admin")
    ).first() is None:
        password = admin_password or generate_password()
        create_user(session, username="admin", password=password, real_name="系统管理员",
                    roles=["admin"], must_change_password=True)
        report.admin_password = password
    return report
