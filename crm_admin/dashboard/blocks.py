"""Blocks a business module adds to the home dashboard, registered by the module itself.

A module that has something to show on landing (the reclaim rules: "即将被回收的客户") registers a
``Block`` in its ``board.py``; the dashboard finds those files by walking the package
(``core.discovery``) and never imports the module. A block's ``fill`` reads within the principal's
scope and returns what its template shows (``block`` in the template), or None to show nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from crm_admin.core import discovery
from crm_admin.core.principal import Principal


@dataclass(frozen=True)
class Block:
    key: str
    template: str  # included with ``block`` = what ``fill`` returned
    fill: Callable[[Session, Principal], Mapping[str, Any] | None]
    order: int = 100


_BLOCKS: dict[str, Block] = {}
load_all = discovery.once("board")


def register(block: Block) -> Block:
    _BLOCKS[block.key] = block
    return block


def blocks() -> list[Block]:
    load_all()
    return sorted(_BLOCKS.values(), key=lambda b: (b.order, b.key))


def filled(open_session: Callable[[], Session], principal: Principal) -> list[dict[str, Any]]:
    """(template, data) of every registered block that has something for ``principal``."""
    out = []
    for block in blocks():
        with open_session() as session:
            data = block.fill(session, principal)
        if data is not None:
            out.append({"key": block.key, "template": block.template, "data": data})
    return out
