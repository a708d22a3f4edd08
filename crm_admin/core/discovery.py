"""Finding what business modules register: each module that has a ``records.py``, ``importing.py``,
``notifying.py`` or ``models.py`` registers itself when that file is imported, so shared machinery imports the file of
every module by name instead of naming the modules (a new module is found without editing anything)."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable

import crm_admin

_lock = threading.Lock()
_done: set[str] = set()


def import_each(submodule: str) -> None:
    """Import ``crm_admin.<module>.<submodule>`` for every business module that has one."""
    for info in pkgutil.iter_modules(crm_admin.__path__):
        if not info.ispkg:
            continue
        name = f"crm_admin.{info.name}.{submodule}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the file exists but imports something missing: a real error
                raise


def once(submodule: str) -> Callable[[], None]:
    """A loader that imports every module's ``submodule`` the first time it is called in a process."""

    def load() -> None:
        if submodule in _done:
            return
        with _lock:
            if submodule not in _done:
                import_each(submodule)
                _done.add(submodule)

    return load
