"""``pip install -e '.[bench]'`` is all the benchmark needs: every library crm_admin/perf and the load
script import is a dependency of the app or of the bench extra (httpx once was only in the test extra,
and the README's reproduction stopped at ModuleNotFoundError)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("-", "_") for req in requirements}


def _imported_libraries(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in {"crm_admin", "tests"}}


def test_bench_extra_and_app_dependencies_cover_every_benchmark_import() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    installed = _requirement_names(project["dependencies"]) | _requirement_names(
        project["optional-dependencies"]["bench"])
    # import name → distribution name where they differ
    distribution = {"yaml": "pyyaml", "dateutil": "python_dateutil"}
    files = [*sorted((ROOT / "crm_admin" / "perf").glob("*.py")), ROOT / "bench" / "locustfile.py"]
    missing = {f"{path.relative_to(ROOT)}: {name}" for path in files for name in _imported_libraries(path)
               if distribution.get(name, name).lower() not in installed}
    assert not missing, sorted(missing)
