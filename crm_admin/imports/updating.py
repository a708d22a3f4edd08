"""Imports that update existing rows: the upload form's choices, and the dry run's plan.

An importer that can update (``ImportSpec.match_keys``) lets the user choose the column rows are matched
on, the columns an update changes and whether a blank cell clears a field. The dry run writes its plan
— every row's outcome (create / update with before→after / unchanged / reject) and the version of the
existing row it matched — as ``import_chunk`` rows of kind ``plan``; the job page shows it and the apply
refuses a row whose match is no longer what the dry run showed (``runner``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from crm_admin.core.errors import UserError
from crm_admin.core.i18n import gettext as _
from crm_admin.core.principal import Principal
from crm_admin.imports import chunks
from crm_admin.imports.spec import CREATE, REJECT, UNCHANGED, UPDATE, ImportSpec, Planned, Row

PLAN = "plan"  # import_chunk.kind of a job's plan
PAGE_ROWS = 200  # rows of the plan per page of the job page

# shown in Chinese; English in locale/en/LC_MESSAGES/imports.po
OUTCOME_LABELS = {"create": "新建", UPDATE: "更新", UNCHANGED: "无变化", REJECT: "有问题"}


def match_choices(spec: ImportSpec) -> list[tuple[str, str]]:
    """(option value, label) of the upload form's "match existing rows" choice."""
    return [(value, f"按{spec.header_of(key)}匹配") for value, key in spec.match_keys.items()]


def update_choices(spec: ImportSpec) -> list[tuple[str, str]]:
    return [(key, spec.header_of(key)) for key in spec.updatable]


def update_options(spec: ImportSpec, principal: Principal, *, match_by: str, columns: Iterable[str],
                   blank_clears: bool) -> dict[str, Any]:
    """The upload form's update choices as job options ({} when the import only creates), or a clear
    UserError: nothing is started on a bad choice."""
    match_by = (match_by or "").strip()
    picked = list(dict.fromkeys(c.strip() for c in columns if c and c.strip()))
    if not spec.match_keys:
        if match_by or picked or blank_clears:
            raise UserError(_("导入{title}不支持更新已有记录。").format(title=_(spec.title)))
        return {}
    if not match_by:
        if picked:
            raise UserError(_("勾选了要更新的列,但没有选择如何匹配已有记录:请选择匹配方式,或取消勾选。"))
        if blank_clears:
            raise UserError(_("“空白单元格清空该字段”只用于更新已有记录:请选择匹配方式,或取消勾选。"))
        return {}
    if match_by not in spec.match_keys:
        raise UserError(_("匹配方式无效,请重新选择。"))
    if not principal.can(spec.resource, "edit"):
        raise UserError(_("您没有修改{title}的权限,不能用导入更新已有{title}。").format(title=_(spec.title)))
    if not picked:
        raise UserError(_("请至少勾选一个要更新的列。"))
    unknown = [c for c in picked if c not in spec.updatable]
    if unknown:
        raise UserError(_("要更新的列“{column}”无效,请重新选择。").format(column=unknown[0][:32]))
    key = spec.match_keys[match_by]
    if key in picked:
        header = spec.header_of(key)
        raise UserError(_("按{column}匹配时不能同时更新{column},请取消勾选该列。").format(column=_(header)))
    ordered = [c for c in spec.updatable if c in picked]
    return {"match_by": match_by, "update_columns": ordered, "blank_clears": bool(blank_clears)}


def updating(options: dict[str, Any]) -> bool:
    return bool(options.get("match_by"))


# ----- the plan: one JSON line per row -----------------------------------------------------------

class PlanWriter:
    """The dry run's plan, written to a local file as rows come (the runner then keeps it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fh: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by ``close``

    def add(self, row: Row) -> None:
        line = {"n": row.number, "a": row.outcome}
        if row.target is not None:
            line.update(id=row.target, v=row.version, k=row.label)
        elif row.outcome == CREATE and (row.raw or {}).get("name"):
            line["k"] = str(row.raw["name"])[:128]  # the record to be created, by the name in the sheet
        if row.error:
            line["e"] = row.error
        elif row.changes:
            line["c"] = row.changes
        self.fh.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.fh.close()


def _lines(job_id: str) -> Iterator[dict[str, Any]]:
    tail = b""
    for piece in chunks.pieces(job_id, PLAN):
        data = tail + piece
        *whole, tail = data.split(b"\n")
        for line in whole:
            if line:
                yield json.loads(line)
    if tail.strip():
        yield json.loads(tail)


def planned(job_id: str) -> dict[int, Planned]:
    """Row number → what the dry run planned for it (read by the apply)."""
    return {int(d["n"]): Planned(str(d["a"]), d.get("id"), d.get("v")) for d in _lines(job_id)}


def plan_page(job_id: str, show: str, page: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the plan for the job page (``show``: one outcome, or "" for all): rows, pages."""
    rows = [d for d in _lines(job_id) if not show or d["a"] == show]
    pages = max(1, (len(rows) + PAGE_ROWS - 1) // PAGE_ROWS)
    page = min(max(page, 1), pages)
    out = []
    for d in rows[(page - 1) * PAGE_ROWS: page * PAGE_ROWS]:
        out.append({"number": d["n"], "outcome": d["a"], "outcome_label": OUTCOME_LABELS.get(d["a"], d["a"]),
                    "label": d.get("k", ""), "error": d.get("e", ""),
                    "changes": [(k, v[0], v[1]) for k, v in (d.get("c") or {}).items()]})
    return out, pages
