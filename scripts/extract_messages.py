#!/usr/bin/env python3
"""List the Chinese interface texts that have no English translation yet.

    .venv/bin/python scripts/extract_messages.py            # list what is missing (exit 1 if any)
    .venv/bin/python scripts/extract_messages.py --write    # also append empty stubs to
                                                            # crm_admin/locale/en/LC_MESSAGES/<module>.po

Then fill in each stub's ``msgstr`` with the English text. Collected: view names, categories,
column labels, @action labels, and Chinese literals in ``_()``/``gettext()``/``tr()`` calls of
templates and Python code (see crm_admin/web/catalog.py). tests/core/test_i18n.py fails while
anything is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# importing the views must not touch a real database
os.environ.setdefault("CRM_DATABASE_URL", f"sqlite:///{tempfile.mkdtemp()}/extract.sqlite3")
os.environ.setdefault("CRM_SECRET_KEY", "extract-messages-" + "x" * 32)


def main() -> int:
    from crm_admin.web import catalog

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="append empty stubs for missing texts")
    args = parser.parse_args()

    found = catalog.collect()
    missing = catalog.missing(found)
    if not missing:
        print(f"English catalog complete: {len(found.locations)} texts translated.")
        return 0
    by_module: dict[str, list[str]] = {}
    for text, locs in sorted(missing.items()):
        module = sorted(found.modules_of(text))[0]
        by_module.setdefault(module, []).append(f"  {text!r}  ({sorted(locs)[0].split(':', 1)[1]})")
    for module, lines in sorted(by_module.items()):
        print(f"crm_admin/locale/en/LC_MESSAGES/{module}.po: {len(lines)} missing")
        print("\n".join(lines))
    if args.write:
        written = catalog.append_stubs(missing)
        for module, count in sorted(written.items()):
            print(f"appended {count} stub(s) to crm_admin/locale/en/LC_MESSAGES/{module}.po")
        print("Now fill in the empty msgstr lines with English.")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
