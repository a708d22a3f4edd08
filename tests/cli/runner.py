"""Running ``crm-admin`` the way an operator does: the installed script, in a process of its own.

The environment is the test run's own (``CRM_DATABASE_URL`` / ``CRM_DATA_DIR`` point at the test
database), plus whatever a test overrides. A test that runs a command this way declares it with
``@pytest.mark.cli_command("<command>")``; ``tests/cli/test_every_command.py`` checks that every command
of ``crm_admin.cli.main`` has such a test.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CRM_ADMIN = Path(sys.executable).with_name("crm-admin")


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300, stdin: str = "") -> CliResult:
    """Run the command to its end; ``stdin`` is all it can read (empty: a prompt finds no answer)."""
    assert CRM_ADMIN.exists(), f"crm-admin is not installed next to {sys.executable}: run scripts/install.sh"
    proc = subprocess.run([str(CRM_ADMIN), *args], env=env or cli_env(), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False, input=stdin)
    result = CliResult(proc.returncode, proc.stdout, proc.stderr)
    # whatever happens, the operator reads Chinese sentences, not Python's or click's internals
    assert "Traceback" not in result.output, result.output
    assert "Aborted!" not in result.output, result.output
    return result


def start_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[str]:
    """A long-running command (``serve``); stop it with ``stop_cli``."""
    assert CRM_ADMIN.exists(), f"crm-admin is not installed next to {sys.executable}: run scripts/install.sh"
    return subprocess.Popen([str(CRM_ADMIN), *args], env=env or cli_env(), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stop_cli(proc: subprocess.Popen[str], *, ctrl_c: bool = False) -> str:
    """Stop a running command (with Ctrl+C, as a person at the terminal would, when ``ctrl_c``)."""
    if ctrl_c:
        proc.send_signal(signal.SIGINT)
    else:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[str], *, timeout: float = 90,
             context: ssl.SSLContext | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as reply:
                return str(reply.read().decode("utf-8"))
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"no answer from {url} in time")
