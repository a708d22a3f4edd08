"""Spreadsheet import shared by every business module: read, dry run, apply, error workbook, progress.

A module describes its sheet with an ``ImportSpec`` (``spec.py``: Chinese headers, a batch validator
and a batch writer) and registers it (``registry.py``); this package does the rest:

- ``spreadsheet.py``, ``package.py``, ``xlsx.py``: reading an upload within fixed limits (an upload
  may be a zip, XML or CSV bomb); ``reading.py`` sniffs the file and yields its rows keyed by the
  spec's columns, in batches; ``cells.py`` turns cell texts into values.
- ``store.py`` and ``chunks.py``: a job is a row of ``import_job``; the uploaded file and the error
  workbook are kept as ``import_chunk`` rows, so any process on any node can show a job, serve its
  error workbook and apply it.
- ``runner.py``: the dry run and the apply, each in a background thread with a heartbeat; the apply
  is claimed by one conditional UPDATE, so it happens once across processes.
- ``pages.py``: the import page (``/admin/import/<key>``) for every registered importer.
- ``jobs.py``: the scheduled clean-up of old jobs.

This package imports no importer: the importers register themselves with it.
"""
