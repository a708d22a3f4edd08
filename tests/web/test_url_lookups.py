"""Links and redirects to our own pages are looked up by route name (``request.url_for`` /
``core.pages.url_path`` in Python, ``url_for`` in templates), never written by hand as ``/admin/…``:
a route that moves then moves its links with it, and a mistyped link fails loudly instead of 404-ing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "crm_admin"

# (file, text that may stay in it — None for the whole file): why it is not a route look-up
ALLOWED: dict[tuple[str, str | None], str] = {
    # moves with the imports package
    ("crm_admin/customers/imports.py", None): "moves with the imports package",
    ("crm_admin/customers/templates/imports/page.html", None): "moves with the imports package",
    ("crm_admin/customers/templates/imports/job.html", None): "moves with the imports package",
    # not links: path prefixes matched against incoming requests, before any route is chosen
    ("crm_admin/web/headers.py", "/admin/statics/"): "static prefix the security headers skip",
    ("crm_admin/accounts/auth.py", "/admin/account/password"): "forced password change: middleware "
                                                               "matching paths before routing",
    ("crm_admin/accounts/auth.py", "/admin/logout"): "paths exempt from the forced password change",
    ("crm_admin/accounts/auth.py", "/admin/statics"): "paths exempt from the forced password change",
    ("crm_admin/accounts/auth.py", "/admin/crm-static"): "paths exempt from the forced password change",
    ("crm_admin/core/csrf.py", "/admin/"): "the CSRF refusal page's fallback when it answers outside "
                                           "the admin app (no route to look up)",
    # addresses for people and for an outside client, not links inside a page
    ("crm_admin/cli.py", "/admin/"): "the address the server prints for its operator",
    ("crm_admin/perf", None): "the benchmark is an HTTP client of a running server",
    ("crm_admin/cluster/load.py", None): "the cluster drills' load is an HTTP client of the load balancer",
    ("crm_admin/cluster/local.py", "/admin/"): "the address the local cluster prints for its operator",
}

PY_LINK = re.compile(r"""(?:^|["'=])(/admin/[^"'\s]*)""")
TEMPLATE_LINK = re.compile(r"""["'](/admin/[^"'\s]*)""")


def _allowed(path: str, found: str) -> bool:
    for (where, text), _why in ALLOWED.items():
        if (path == where or path.startswith(where + "/")) and (text is None or found.startswith(text)):
            return True
    return False


def _python_links(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found += [(node.lineno, m.group(1)) for m in PY_LINK.finditer(node.value)]
    return found


def _template_links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        found += [(number, m.group(1)) for m in TEMPLATE_LINK.finditer(line)]
    return found


def _hand_built_links() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*")):
        if "migrations" in path.parts or not path.is_file():
            continue
        if path.suffix == ".py":
            links = _python_links(path)
        elif path.suffix in (".html", ".js"):
            links = _template_links(path)
        else:
            continue
        where = str(path.relative_to(ROOT))
        out += [f"{where}:{line}: {link}" for line, link in links if not _allowed(where, link)]
    return out


def test_no_hand_built_admin_links() -> None:
    found = _hand_built_links()
    assert not found, ("links to our own pages must come from the route's name (url_for / url_path), "
                       "not a hand-written /admin/ path:\n" + "\n".join(found))


def test_the_scan_finds_hand_built_links(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Served at /admin/x."""\n'
                      'a = "/admin/customer/list"\n'
                      'b = f"/admin/customer/360/{a}"\n'
                      "c = '<a href=\"/admin/pipeline\">'\n"
                      'base = "/admin"\n', encoding="utf-8")
    assert sorted(link for _line, link in _python_links(sample)) == [
        "/admin/customer/360/", "/admin/customer/list", "/admin/pipeline"]
    page = tmp_path / "page.html"
    page.write_text("{#- GET /admin/logout asks first -#}\n<a href=\"/admin/pipeline\">x</a>\n"
                    "<a href=\"{{ url_for('admin:view-pipeline') }}\">y</a>\n", encoding="utf-8")
    assert _template_links(page) == [(2, "/admin/pipeline")]


def test_every_allowance_is_still_needed() -> None:
    """An allowance whose link is gone is removed, so the list stays short and true."""
    unused = []
    for (where, text), _why in ALLOWED.items():
        path = ROOT / where
        if not path.exists():
            continue  # e.g. moved with the imports package
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".py", ".html", ".js"))
        links = [link for f in files
                 for _line, link in (_python_links(f) if f.suffix == ".py" else _template_links(f))]
        if not any(text is None or link.startswith(text) for link in links):
            unused.append(f"{where}: {text}")
    assert not unused, "allowances no longer needed:\n" + "\n".join(unused)


def test_absolute_links_follow_the_address_the_site_is_reached_by(admin_client: Any) -> None:
    """Route look-ups and their absolute URLs are kept between requests: each request still gets links
    to the host and scheme it came by."""
    for host in ("crm.example.cn", "10.0.0.8:8000", "crm.example.cn"):
        html = admin_client.get("/admin/customer/list", headers={"host": host}).text
        links = set(re.findall(r'href="(https?://[^/"]+)/admin/', html))
        assert links == {f"http://{host}"}, links
