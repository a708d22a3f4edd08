"""The importers: each business module registers its ``ImportSpec`` from its own ``importing.py``.

This package imports none of them. ``load_all`` finds their ``importing.py`` files by walking the
package (as ``crm_admin/models.py`` finds the models), once per process, the first time the registry
is read; the web app calls it at start-up so that a broken registration fails there.
"""

from __future__ import annotations

from crm_admin.core import discovery
from crm_admin.imports.spec import ImportSpec

_SPECS: dict[str, ImportSpec] = {}


def register[S: ImportSpec](spec: S) -> S:
    """Make ``spec`` importable at ``/admin/import/<spec.key>``; returns it (``SPEC = register(...)``)."""
    if not spec.key or not spec.resource:
        raise ValueError(f"import spec {spec!r} needs a key and a resource")
    known = _SPECS.get(spec.key)
    if known is not None and type(known) is not type(spec):
        raise ValueError(f"import key {spec.key!r} registered twice ({type(known).__name__}, {type(spec).__name__})")
    _SPECS[spec.key] = spec
    return spec


# Import every business module's ``importing.py`` (once per process; cheap afterwards).
load_all = discovery.once("importing")


def specs() -> dict[str, ImportSpec]:
    """Every registered importer by key, in the order of the import page's tabs."""
    load_all()
    return {s.key: s for s in sorted(_SPECS.values(), key=lambda s: (s.order, s.key))}


def spec(key: str) -> ImportSpec | None:
    load_all()
    return _SPECS.get(key)


def any_import() -> tuple[tuple[str, str], ...]:
    """The permissions of which any one opens the import pages: importing something."""
    return tuple(dict.fromkeys((s.resource, "import") for s in specs().values()))
