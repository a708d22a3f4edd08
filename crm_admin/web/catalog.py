"""Which user-visible Chinese strings need an English translation, and which lack one.

Collected: every admin view's ``name``, ``name_plural``, ``category`` and ``column_labels``
values, ``@action`` labels and confirmation messages, the words of every label map (``core.i18n.Labels``:
statuses, risk levels, audit actions, resources …), the shipped dictionary types' names, and every Chinese literal passed to
``_()``, ``gettext()``, ``lazy_gettext()`` or ``tr()`` in our templates and Python code. The English
catalog is ``crm_admin/locale/en/LC_MESSAGES/<module>.po`` (msgid = the Chinese text). Used by
``scripts/extract_messages.py`` and by tests/core/test_i18n.py, which fails when one is missing.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from crm_admin.core import sqladmin_compat

PACKAGE_DIR = Path(__file__).resolve().parent.parent
EN_DIR = PACKAGE_DIR / "locale" / "en" / "LC_MESSAGES"
ZH_DIR = PACKAGE_DIR / "locale" / "zh" / "LC_MESSAGES"

_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
# _("…") / gettext('…') / tr("…") / lazy_gettext("…"): the first argument when it is a literal
_CALL = re.compile(
    r"""(?<![\w.])(?:_|gettext|lazy_gettext|tr)\(\s*(?P<q>["'])(?P<text>(?:\\.|(?!(?P=q)).)*?)(?P=q)\s*[,)]""",
    re.S,
)
# files whose literals are not ours to translate (vendored code)
_SKIP_PARTS = {"vendor", "migrations", "__pycache__"}


@dataclass
class Found:
    locations: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, text: str, module: str, where: str) -> None:
        if text and _CJK.search(text):
            self.locations[text].add(f"{module}:{where}")

    def modules_of(self, text: str) -> set[str]:
        return {loc.split(":", 1)[0] for loc in self.locations[text]}


def module_of_path(path: Path) -> str:
    """crm_admin/<module>/... → <module>; shared machinery → "ui" (core, web, templates)."""
    rel = path.resolve().relative_to(PACKAGE_DIR)
    first = rel.parts[0] if len(rel.parts) > 1 else ""
    if first in ("", "core", "web", "templates", "static", "locale"):
        return "ui"
    return first


def _unescape(text: str) -> str:
    return text.replace("\\'", "'").replace('\\"', '"').replace("\\n", "\n")


def collect_literals(found: Found) -> None:
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.suffix not in (".py", ".html") or _SKIP_PARTS & set(path.parts):
            continue
        if path.name == "catalog.py":
            continue
        source = path.read_text(encoding="utf-8")
        module = module_of_path(path)
        for match in _CALL.finditer(source):
            line = source.count("\n", 0, match.start()) + 1
            found.add(_unescape(match.group("text")), module, f"{path.relative_to(PACKAGE_DIR)}:{line}")


def collect_views(found: Found) -> None:
    from crm_admin.web.app import collect_views as app_views

    for view in app_views():
        module = view.__module__.split(".")[1] if view.__module__.startswith("crm_admin.") else "ui"
        where = f"{view.__module__}.{view.__name__}"
        for attr in ("name", "name_plural", "category"):
            value = getattr(view, attr, "")
            if isinstance(value, str):
                found.add(value, module, f"{where}.{attr}")
        labels = getattr(view, "column_labels", None) or {}
        for key, value in labels.items():
            if isinstance(value, str):
                found.add(value, module, f"{where}.column_labels[{getattr(key, 'key', key)}]")
        for member in vars(view).values():
            for key, value in sqladmin_compat.action_texts(member).items():
                found.add(value, module, f"{where}.@action.{key}")


def collect_label_maps(found: Found) -> None:
    """The words of every module-level ``Labels`` map: each is translated when a screen shows it."""
    from crm_admin.core.i18n import Labels

    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], "crm_admin."):
        if _SKIP_PARTS & set(info.name.split(".")) or info.name.endswith(".__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional driver missing: its module shows nothing
            continue
        path = Path(module.__file__ or "").resolve()
        source = path.read_text(encoding="utf-8") if path.is_file() else ""
        for name, value in vars(module).items():
            if isinstance(value, Labels) and re.search(rf"^{name} = Labels\(", source, re.M):  # where it is defined
                for code, text in value.source.items():
                    found.add(text, module_of_path(path), f"{path.relative_to(PACKAGE_DIR)}:{name}[{code}]")


def collect_seed(found: Found) -> None:
    """The shipped dictionary types' names: shown through ``tr()``, so the seeded ones read in English."""
    seed = PACKAGE_DIR.parent / "seed" / "dictionaries.json"
    if seed.exists():
        for entry in json.loads(seed.read_text(encoding="utf-8")):
            found.add(str(entry.get("name", "")), "dictionary", f"seed/dictionaries.json:{entry.get('code')}")


def collect() -> Found:
    found = Found()
    collect_views(found)
    collect_label_maps(found)
    collect_seed(found)
    collect_literals(found)
    return found


def read_catalog(path: Path) -> Catalog:
    locale = path.parent.parent.name
    with path.open("rb") as fh:
        return read_po(fh, locale=locale if locale in ("zh", "en") else None)


def translated_msgids(folder: Path | None = None) -> set[str]:
    folder = folder or EN_DIR
    done: set[str] = set()
    for po in sorted(folder.glob("*.po")) if folder.exists() else []:
        for message in read_catalog(po):
            if message.id and isinstance(message.id, str) and message.string:
                done.add(message.id)
    return done


def present_msgids(folder: Path | None = None) -> set[str]:
    folder = folder or EN_DIR
    """msgids present in the catalog, translated or not (stubs included)."""
    ids: set[str] = set()
    for po in sorted(folder.glob("*.po")) if folder.exists() else []:
        ids.update(m.id for m in read_catalog(po) if m.id and isinstance(m.id, str))
    return ids


def missing(found: Found | None = None) -> dict[str, set[str]]:
    """Chinese text → where it is used, for every text without an English translation."""
    found = found or collect()
    done = translated_msgids()
    return {text: locs for text, locs in found.locations.items() if text not in done}


def append_stubs(missing_texts: dict[str, set[str]]) -> dict[str, int]:
    """Add an empty ``msgstr`` entry per missing text to the .po of the module that uses it."""
    present = present_msgids()
    per_module: dict[str, list[tuple[str, set[str]]]] = defaultdict(list)
    for text, locs in sorted(missing_texts.items()):
        if text in present:
            continue
        module = sorted({loc.split(":", 1)[0] for loc in locs})[0]
        per_module[module].append((text, locs))
    written: dict[str, int] = {}
    for module, entries in per_module.items():
        path = EN_DIR / f"{module}.po"
        catalog = read_catalog(path) if path.exists() else new_catalog(module)
        for text, locs in entries:
            catalog.add(text, "", auto_comments=sorted(loc.split(":", 1)[1] for loc in locs)[:3])
        save_catalog(catalog, path)
        written[module] = len(entries)
    return written


def new_catalog(module: str) -> Catalog:
    return Catalog(locale="en", project=f"crm-admin {module}", charset="utf-8", fuzzy=False)


def save_catalog(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        write_po(fh, catalog, width=0, sort_output=False, include_previous=False)
