"""Benchmark history: results folders over commits, change points, trend page, bisect.

``samplemind-bench history add|changes|report`` (:mod:`bench.history.cli`) and
``samplemind-bench bisect`` (:mod:`bench.history.bisect`); the store is :mod:`bench.history.store`
(SQLite or PostgreSQL through SQLAlchemy Core), results folders are read only by
:mod:`bench.history._ingest`, change points come from :mod:`bench.history.changes` (the library
comparison behind its choice: ``python -m studies.history_detectors``), and past commits are measured
with ``python -m bench.history.backfill``. Needs the ``history`` extra
(``pip install 'samplemind-core[history]'``).
"""
