"""The load script for ``crm-admin bench --load`` loads: what it takes from the product still exists.

A stand-in with the three names the script uses takes Locust's place, installed or not: importing the
real one patches the test process's sockets and threads (gevent), after which the other tests of that
process hang. The script's own imports from crm_admin are the point of the test.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "locustfile.py"


def _stand_in_locust() -> types.ModuleType:
    module = types.ModuleType("locust")

    class FastHttpUser:
        pass

    def between(low: float, high: float) -> Any:
        return lambda _user: low

    def task(weight: Any = 1) -> Any:
        return weight if callable(weight) else (lambda fn: fn)

    module.FastHttpUser = FastHttpUser  # type: ignore[attr-defined]
    module.between = between  # type: ignore[attr-defined]
    module.task = task  # type: ignore[attr-defined]
    return module


def test_load_script_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "locust", _stand_in_locust())
    spec = importlib.util.spec_from_file_location("crm_bench_locustfile", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.find_token('<input name="csrf_token" value="abc">') == "abc"
