"""What the product takes from SQLAdmin's insides stays in core/sqladmin_compat.py, and an upgrade of
SQLAdmin shows what changed in everything we copied from it.

Templates under crm_admin/templates/sqladmin/ that replace SQLAdmin's of the same name are full
copies with our changes: SQLAdmin 0.32's templates put the lines we change (page language and title,
translated labels, the CSRF token in forms, actions as POST forms, the topbar) outside any block —
or each template is one block — so extending the original would still repeat the whole block.
For each of them (and the forked static/js/sqladmin-main.js) a snapshot of the original it was
copied from is kept in tests/vendor/sqladmin/; when the installed original differs from the
snapshot the test fails and prints upstream's change, to be re-applied to our copy before the
snapshot is refreshed.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import re
from pathlib import Path

import pytest
import sqladmin
from jinja2 import Environment
from sqladmin import Admin, BaseView, ModelView

from crm_admin.core import sqladmin_compat

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "crm_admin"
OVERRIDES = PACKAGE / "templates" / "sqladmin"
SNAPSHOTS = ROOT / "tests" / "vendor" / "sqladmin"  # third-party text, kept as released

# our file → SQLAdmin's file it was forked from (relative to the package's statics)
FORKED_STATICS = {"static/js/sqladmin-main.js": "js/main.js"}


def _overridden_templates() -> list[str]:
    """Every template of ours that replaces one of SQLAdmin's (same name)."""
    names = sorted(str(p.relative_to(OVERRIDES)) for p in OVERRIDES.rglob("*.html"))
    return [name for name in names if sqladmin_compat.original_template(name).exists()]


def _diff(snapshot: Path, installed: Path) -> str:
    return "".join(difflib.unified_diff(
        snapshot.read_text(encoding="utf-8").splitlines(keepends=True),
        installed.read_text(encoding="utf-8").splitlines(keepends=True),
        fromfile=f"snapshot {snapshot.relative_to(ROOT)}", tofile=f"installed {installed}",
    ))


def _upstream_unchanged(ours: str, snapshot: Path, installed: Path) -> None:
    assert snapshot.exists(), (
        f"{ours} overrides SQLAdmin's {installed.name} but no snapshot of the original is stored: "
        f"copy {installed} to {snapshot.relative_to(ROOT)}"
    )
    diff = _diff(snapshot, installed)
    assert not diff, (
        f"SQLAdmin's original of {ours} changed upstream. Re-apply upstream's change to our copy, "
        f"then refresh the snapshot {snapshot.relative_to(ROOT)}:\n{diff}"
    )


@pytest.mark.parametrize("name", _overridden_templates())
def test_copied_template_matches_the_original_it_was_copied_from(name: str) -> None:
    _upstream_unchanged(f"templates/sqladmin/{name}", SNAPSHOTS / "templates" / name,
                        sqladmin_compat.original_template(name))


@pytest.mark.parametrize(("ours", "original"), sorted(FORKED_STATICS.items()))
def test_forked_script_matches_the_original_it_was_forked_from(ours: str, original: str) -> None:
    assert (PACKAGE / ours).exists()
    _upstream_unchanged(ours, SNAPSHOTS / "statics" / original, sqladmin_compat.original_static(original))


def test_every_snapshot_belongs_to_a_copy() -> None:
    """A snapshot whose copy was removed (or now extends the original) is dead weight."""
    wanted = {f"templates/{name}" for name in _overridden_templates()}
    wanted |= {f"statics/{original}" for original in FORKED_STATICS.values()}
    stored = {str(p.relative_to(SNAPSHOTS)) for p in SNAPSHOTS.rglob("*") if p.is_file() and p.name != "README.md"}
    assert stored == wanted


def test_the_originals_are_reachable_under_their_own_prefix() -> None:
    env = Environment(loader=sqladmin_compat.original_templates_loader(), autoescape=True)
    source, filename, _uptodate = env.loader.get_source(env, "sqladmin_original/list.html")  # type: ignore[union-attr]
    assert Path(str(filename)) == sqladmin_compat.original_template("list.html")
    assert source == sqladmin_compat.original_template("list.html").read_text(encoding="utf-8")


def test_the_app_resolves_overrides_first_and_originals_by_prefix(app: object) -> None:
    env = app.state.admin.templates.env  # type: ignore[attr-defined]
    _src, ours, _u = env.loader.get_source(env, "sqladmin/list.html")
    _src, original, _u = env.loader.get_source(env, "sqladmin_original/list.html")
    assert Path(ours) == OVERRIDES / "list.html"
    assert Path(original) == sqladmin_compat.original_template("list.html")


# ----- the version check --------------------------------------------------------------------------

def test_the_installed_version_is_the_supported_one() -> None:
    sqladmin_compat.check_version()
    major, minor = sqladmin_compat.SUPPORTED
    sqladmin_compat.check_version(f"{major}.{minor}.0")
    sqladmin_compat.check_version(f"{major}.{minor}.9")


@pytest.mark.parametrize("installed", ["0.33.0", "0.31.2", "1.0.0", "1.32.0", "", "zero", "0"])
def test_an_unknown_version_is_refused(installed: str) -> None:
    with pytest.raises(sqladmin_compat.UnsupportedSQLAdminVersion) as refused:
        sqladmin_compat.check_version(installed)
    assert "sqladmin_compat.py" in str(refused.value)


def test_the_app_refuses_to_start_with_an_unknown_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from crm_admin.web.app import create_app

    monkeypatch.setattr(sqladmin_compat, "installed_version", lambda: "0.40.1")
    with pytest.raises(sqladmin_compat.UnsupportedSQLAdminVersion):
        create_app()


# ----- nobody else touches SQLAdmin's insides ---------------------------------------------------

def _sqladmin_private_names() -> set[str]:
    """Underscore attributes and methods of SQLAdmin's view and admin classes (those set in
    ``__init__`` included)."""
    names = {n for cls in (ModelView, BaseView, Admin) for n in dir(cls)
             if n.startswith("_") and not n.startswith("__")}
    source = inspect.getsource(sqladmin.models) + inspect.getsource(sqladmin.application)
    names |= set(re.findall(r"\bself\.(_[a-z]\w*)", source))
    # what ``@expose`` and ``@action`` set on the decorated function
    names |= set(re.findall(r"\bfunc\.(_[a-z]\w*)", source))
    return names


def _violations(path: Path, private: set[str], root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    where = path.relative_to(root)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqladmin._"):
            found.append(f"{where}:{node.lineno} imports {node.module}")
        elif isinstance(node, ast.Import):
            found += [f"{where}:{node.lineno} imports {a.name}" for a in node.names
                      if a.name.startswith("sqladmin._")]
        elif isinstance(node, ast.Attribute) and node.attr in private:
            found.append(f"{where}:{node.lineno} uses SQLAdmin's {node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in private):
            found.append(f"{where}:{node.lineno} reads SQLAdmin's {node.args[1].value}")
        elif isinstance(node, ast.ClassDef):
            # overriding one of SQLAdmin's underscore methods depends on it as much as calling it
            found += [f"{where}:{item.lineno} overrides SQLAdmin's {item.name}" for item in node.body
                      if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in private]
    return found


def test_only_the_compat_module_touches_sqladmin_private_api() -> None:
    private = _sqladmin_private_names()
    assert {"_stmt_by_identifier", "_build_url_for", "_run_query", "_column_labels"} <= private
    compat = PACKAGE / "core" / "sqladmin_compat.py"
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == compat or "migrations" in path.parts:
            continue
        found += _violations(path, private)
    assert not found, "SQLAdmin's private API outside core/sqladmin_compat.py:\n" + "\n".join(found)


def test_the_scan_sees_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    text = ("from sqladmin._queries import Query\n"
            "class V:\n    def _build_url_for(self): ...\n"
            "def f(view):\n    return view._stmt_by_identifier(1)\n"
            "def g(member):\n    return getattr(member, '_confirmation_message', None)\n")
    sample.write_text(text, encoding="utf-8")
    found = _violations(sample, _sqladmin_private_names(), tmp_path)
    assert len(found) == 4, found
