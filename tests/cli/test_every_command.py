"""Every ``crm-admin`` command has a test that runs it as a subprocess, the way an operator does.

``audit verify`` once crashed from a shell (``KeyError: 'audit_log'``) while its test passed: the test
ran it inside a process that had already imported every model. A command added without such a test
fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import click

from crm_admin.cli import main

TESTS = Path(__file__).resolve().parents[1]
RUNNERS = {"run_cli", "start_cli"}


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name))


def _declared_command(decorator: ast.expr) -> str | None:
    """"x" from ``@pytest.mark.cli_command("x")``."""
    if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
            and decorator.func.attr == "cli_command" and decorator.args
            and isinstance(decorator.args[0], ast.Constant) and isinstance(decorator.args[0].value, str)):
        return decorator.args[0].value
    return None


def _calls_a_runner(function: ast.FunctionDef) -> bool:
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in RUNNERS
               for node in ast.walk(function))


def declared_tests() -> tuple[dict[str, list[str]], list[str]]:
    """(command → the tests declaring it, tests declaring a command without running anything)."""
    covered: dict[str, list[str]] = {}
    hollow: list[str] = []
    for file in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            commands = [c for c in map(_declared_command, node.decorator_list) if c]
            where = f"{file.relative_to(TESTS.parent)}::{node.name}"
            if commands and not _calls_a_runner(node):
                hollow.append(where)
            for command in commands:
                covered.setdefault(command, []).append(where)
    return covered, hollow


def test_every_command_runs_as_a_subprocess_somewhere() -> None:
    commands = set(command_paths(main))
    assert {"serve", "backup", "restore", "audit verify"} <= commands  # the walk reaches subgroups
    covered, hollow = declared_tests()
    missing = sorted(commands - set(covered))
    assert not missing, (
        f"crm-admin commands without a subprocess test: {missing}. Add a test that runs the command "
        "with tests.cli.runner.run_cli (or start_cli for a server) and mark it "
        "@pytest.mark.cli_command(\"<command>\")."
    )
    assert not hollow, f"tests marked cli_command that never call run_cli/start_cli: {hollow}"
    unknown = sorted(set(covered) - commands)
    assert not unknown, f"cli_command markers naming no existing command: {unknown}"
