"""The history store: SQLite (default) or PostgreSQL through one SQLAlchemy Core code path.

``DB`` is a file path (an SQLite database, created on first use) or a URL: ``postgresql://...``
(driven by psycopg 3) or ``sqlite:///...``. :func:`open_store` migrates the schema to
:data:`SCHEMA_VERSION` (under a lock: ``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL, so two writers starting together migrate once).

Schema (version 1)::

    schema_version(version)
    machines(id, fingerprint UNIQUE, label, environment)
    runs(id, run_key UNIQUE, source, commit_sha, dirty, created, machine_id, mode, quick, added)
    points(run_id, suite, benchmark, params, metric, value, ci_low, ci_high, n)
          UNIQUE(run_id, suite, benchmark, params, metric)

A run is added in one transaction with all its points, or not at all; ``run_key`` (a hash of the
folder's content) makes adding the same folder twice a no-op, also when two processes race.
Before the transaction commits, the run and the number of its points are read back: a store
that does not return what was written refuses the run (:class:`StoreCorrupt`, rolled back),
so "stored" is only ever said of rows that are there.
SQLite runs in WAL mode with a 60 s busy timeout, so concurrent writers wait instead of failing.

Opening checks the store before anything is read or written (:class:`StoreCorrupt`, naming
the file): an SQLite file must have the SQLite header and pass ``PRAGMA quick_check``; a
database that has tables but no ``schema_version`` is not a history store (on PostgreSQL:
when it has tables of ours without it); a schema version newer than this harness knows, or a
table of the schema that is missing or lacks a column, is refused. Any database error met
later (a damaged page) is a :class:`StoreCorrupt` or :class:`StoreUnavailable` naming the
database, never a raw driver traceback.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.history._ingest import HistoryError, RunRecord

try:
    import sqlalchemy as sa
    from sqlalchemy.engine import URL, Connection, Engine, make_url
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised via MissingDependency
    raise ModuleNotFoundError(
        "bench.history needs SQLAlchemy: pip install 'samplemind-core[history]'", name=_exc.name
    ) from _exc

__all__ = [
    "ENV_VAR",
    "SCHEMA_VERSION",
    "AddResult",
    "Store",
    "StoreCorrupt",
    "StoreUnavailable",
    "check_sqlite_file",
    "database_url",
    "open_store",
    "redacted",
]

ENV_VAR: Final = "SAMPLEMIND_HISTORY"
SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_MS: Final = 60_000
_LOCK_ID: Final = 0x5A4D_4849  # PostgreSQL advisory lock of the migrations ("SMHI")

metadata = sa.MetaData()
schema_version = sa.Table(
    "schema_version", metadata, sa.Column("version", sa.Integer, nullable=False)
)
machines = sa.Table(
    "machines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("environment", sa.Text, nullable=False),
)
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_key", sa.String(64), nullable=False, unique=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("commit_sha", sa.String(64), nullable=True, index=True),
    sa.Column("dirty", sa.Boolean, nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("machine_id", sa.Integer, sa.ForeignKey("machines.id"), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("quick", sa.Boolean, nullable=False),
    sa.Column("added", sa.DateTime(timezone=True), nullable=False),
)
points = sa.Table(
    "points",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("suite", sa.String(64), nullable=False),
    sa.Column("benchmark", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("metric", sa.String(128), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("ci_low", sa.Float, nullable=True),
    sa.Column("ci_high", sa.Float, nullable=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.UniqueConstraint("run_id", "suite", "benchmark", "params", "metric", name="points_key"),
)


def _migrate_to_1(conn: Connection) -> None:
    metadata.create_all(conn)


MIGRATIONS: Final[dict[int, Callable[[Connection], None]]] = {1: _migrate_to_1}
"""``version -> step`` bringing the schema from ``version - 1`` to ``version``; append only."""


class StoreUnavailable(HistoryError):
    """The database cannot be reached or opened; the message names it (password hidden)."""


class StoreCorrupt(HistoryError):
    """The database is damaged, foreign or of an unknown schema; the message names it."""


_SQLITE_HEADER: Final = b"SQLite format 3\x00"
_FIX_HINT: Final = "restore it from a backup, or give --db a new file"


def check_sqlite_file(path: Path) -> None:
    """Refuse an existing SQLite file that is not one or is damaged (:class:`StoreCorrupt`).

    Reads the header, then runs ``PRAGMA quick_check`` (every page and every record's
    format; O(size of the file)). A missing or empty file passes (it will be created).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise StoreUnavailable(f"database {path}: cannot be read ({exc.strerror})") from None
    if head != _SQLITE_HEADER:
        raise StoreCorrupt(f"database {path}: not an SQLite file (its header is {head[:16]!r})")
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            problems = [
                line
                for (row,) in conn.execute("PRAGMA quick_check")
                for line in str(row).splitlines()
                if line != "ok" and not line.startswith("***")
            ]
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:  # locked, unreadable: not a verdict on the content
        raise StoreUnavailable(f"database {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(f"database {path} is damaged ({exc}): {_FIX_HINT}") from None
    if problems:
        raise StoreCorrupt(
            f"database {path} is damaged: PRAGMA quick_check found {len(problems)} problem(s), "
            f"the first: {problems[0]}; {_FIX_HINT}"
        )


def database_url(db: str | Path) -> URL:
    """The SQLAlchemy URL of ``DB``: a path means SQLite; ``postgresql://`` means psycopg 3."""
    text = str(db)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    try:
        url = make_url(text)
    except sa.exc.ArgumentError as exc:
        raise StoreUnavailable(f"not a database URL or path: {text!r} ({exc})") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def redacted(url: URL) -> str:
    """The URL as it may be printed: the password replaced by ``***``."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


@dataclass(frozen=True, slots=True)
class AddResult:
    """What :meth:`Store.add` did with one run."""

    source: str
    stored: bool
    """False: a run with the same content was already there."""
    points: int


class Store:
    """An open history database (use :func:`open_store`)."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self.engine = engine
        self.url = url

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise StoreUnavailable(
                f"database {redacted(self.url)}: {str(exc.orig).strip() or exc}"
            ) from None
        except sa.exc.DBAPIError as exc:  # a damaged page, a foreign table, a bad row
            raise StoreCorrupt(
                f"database {redacted(self.url)}: {str(exc.orig).strip() or exc}"
                + (f"; {_FIX_HINT}" if self.is_sqlite else "")
            ) from None

    def _insert_ignore(self, table: sa.Table, index: Sequence[str]) -> Any:
        # the dialect here, not at import: an SQLite user's command never loads PostgreSQL's
        # (sqlalchemy.dialects.postgresql with its asyncpg/psycopg modules: ~40 ms a process)
        if self.is_sqlite:
            from sqlalchemy.dialects import sqlite as dialect
        else:
            from sqlalchemy.dialects import postgresql as dialect  # type: ignore[no-redef]
        return dialect.insert(table).on_conflict_do_nothing(index_elements=list(index))

    def migrate(self, *, create: bool = True) -> int:
        """Bring the schema to :data:`SCHEMA_VERSION`; returns the version found before.

        ``create=False``: a database without the schema raises :class:`StoreUnavailable`.
        """
        with self._tx() as conn:
            if not self.is_sqlite:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
            where = f"database {redacted(self.url)}"
            tables = set(sa.inspect(conn).get_table_names())
            found = 0
            if "schema_version" in tables:
                found = int(
                    conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
                )
                if found == 0:
                    raise StoreCorrupt(f"{where}: its schema_version table is empty; {_FIX_HINT}")
            else:
                foreign = sorted(tables if self.is_sqlite else tables & set(metadata.tables))
                if foreign:
                    raise StoreCorrupt(
                        f"{where} is not a samplemind history store: it has tables "
                        f"{', '.join(foreign[:5])} and no schema_version; give --db another file"
                    )
                if not create:
                    raise StoreUnavailable(
                        f"{where} holds no history store yet: `samplemind-bench history add "
                        "RESULTS_DIR --db DB` creates it"
                    )
            if found > SCHEMA_VERSION:
                raise StoreCorrupt(
                    f"{where} has schema version {found}; this harness "
                    f"knows up to {SCHEMA_VERSION}: upgrade samplemind-core"
                )
            for version in range(found + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](conn)
                conn.execute(schema_version.delete())
                conn.execute(schema_version.insert().values(version=version))
            self._check_schema(conn, where)
            return found

    @staticmethod
    def _check_schema(conn: Connection, where: str) -> None:
        """Every table of the schema is there with every column (:class:`StoreCorrupt`)."""
        inspector = sa.inspect(conn)
        for table in metadata.sorted_tables:
            if not inspector.has_table(table.name):
                raise StoreCorrupt(f"{where}: table {table.name} is missing; {_FIX_HINT}")
            have = {c["name"] for c in inspector.get_columns(table.name)}
            missing = sorted(set(table.columns.keys()) - have)
            if missing:
                raise StoreCorrupt(
                    f"{where}: table {table.name} lacks column(s) {', '.join(missing)}; {_FIX_HINT}"
                )

    def add(self, run: RunRecord) -> AddResult:
        """Store one run with all its points in one transaction (a no-op if already stored)."""
        with self._tx() as conn:
            conn.execute(
                self._insert_ignore(machines, ["fingerprint"]).values(
                    fingerprint=run.machine,
                    label=run.machine_label,
                    environment=json.dumps(run.environment, sort_keys=True),
                )
            )
            machine_id = conn.execute(
                sa.select(machines.c.id).where(machines.c.fingerprint == run.machine)
            ).scalar_one()
            inserted = conn.execute(
                self._insert_ignore(runs, ["run_key"])
                .values(
                    run_key=run.run_key,
                    source=run.source,
                    commit_sha=run.commit,
                    dirty=run.dirty,
                    created=run.created,
                    machine_id=machine_id,
                    mode=run.mode,
                    quick=run.quick,
                    added=datetime.now(UTC),
                )
                .returning(runs.c.id)
            ).scalar_one_or_none()
            if inserted is None:
                return AddResult(run.source, False, 0)
            conn.execute(
                points.insert(),
                [
                    {
                        "run_id": inserted,
                        "suite": p.suite,
                        "benchmark": p.benchmark,
                        "params": p.params,
                        "metric": p.metric,
                        "value": p.value,
                        "ci_low": p.ci_low,
                        "ci_high": p.ci_high,
                        "n": p.n,
                    }
                    for p in run.points
                ],
            )
            # read back inside the transaction: "stored" only for what the store returns
            kept = conn.execute(
                sa.select(sa.func.count())
                .select_from(points.join(runs))
                .where(runs.c.id == inserted, runs.c.run_key == run.run_key)
            ).scalar_one()
            if kept != len(run.points):
                raise StoreCorrupt(
                    f"database {redacted(self.url)}: wrote {len(run.points)} figures of "
                    f"{run.source} but read back {kept}; nothing was stored. {_FIX_HINT}"
                )
            return AddResult(run.source, True, len(run.points))

    def counts(self) -> dict[str, int]:
        """Rows per table (machines, runs, points)."""
        with self._tx() as conn:
            return {
                t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in (machines, runs, points)
            }

    def listing(self) -> dict[str, Any]:
        """What the store holds, for ``history list``: runs, machines and suites as plain data.

        ``runs``: one dict per run (oldest ``created`` first) with its key, source, commit,
        dirty flag, ``created`` (timezone-aware), machine fingerprint and the suites it has
        points of; ``machines``: fingerprint, label, environment (a dict) and how many runs;
        ``suites``: per suite the runs, benchmarks, metrics and points it has.
        """
        run_q = (
            sa.select(
                runs.c.id,
                runs.c.run_key,
                runs.c.source,
                runs.c.commit_sha,
                runs.c.dirty,
                runs.c.created,
                runs.c.mode,
                runs.c.quick,
                machines.c.fingerprint,
            )
            .select_from(runs.join(machines))
            .order_by(runs.c.created, runs.c.id)
        )
        suite_q = sa.select(
            points.c.run_id,
            points.c.suite,
            sa.func.count().label("points"),
        ).group_by(points.c.run_id, points.c.suite)
        bench_q = sa.select(
            points.c.suite,
            sa.func.count(sa.distinct(points.c.benchmark + "|" + points.c.params)).label("b"),
            sa.func.count(sa.distinct(points.c.metric)).label("m"),
        ).group_by(points.c.suite)
        with self._tx() as conn:
            run_rows = [dict(r._mapping) for r in conn.execute(run_q)]
            per_run = [dict(r._mapping) for r in conn.execute(suite_q)]
            per_suite = {r.suite: (int(r.b), int(r.m)) for r in conn.execute(bench_q)}
            machine_rows = [dict(r._mapping) for r in conn.execute(sa.select(machines))]
        suites_of: dict[int, list[str]] = {}
        suites: dict[str, dict[str, int]] = {}
        for r in per_run:
            suites_of.setdefault(r["run_id"], []).append(r["suite"])
            s = suites.setdefault(r["suite"], {"runs": 0, "points": 0})
            s["runs"] += 1
            s["points"] += int(r["points"])
        for name, (n_bench, n_metrics) in per_suite.items():
            suites[name].update(benchmarks=n_bench, metrics=n_metrics)
        out_runs = []
        for r in run_rows:
            created = r["created"]
            if isinstance(created, datetime) and created.tzinfo is None:
                created = created.replace(tzinfo=UTC)  # SQLite returns naive times
            out_runs.append(
                {
                    "run_key": r["run_key"],
                    "source": r["source"],
                    "commit": r["commit_sha"],
                    "dirty": bool(r["dirty"]),
                    "created": created,
                    "mode": r["mode"],
                    "quick": bool(r["quick"]),
                    "machine": r["fingerprint"],
                    "suites": sorted(suites_of.get(r["id"], [])),
                }
            )
        n_runs: dict[str, int] = {}
        for r in out_runs:
            n_runs[r["machine"]] = n_runs.get(r["machine"], 0) + 1
        out_machines = []
        for m in sorted(machine_rows, key=lambda m: m["id"]):
            try:
                environment = json.loads(m["environment"])
            except ValueError:
                environment = {}
            out_machines.append(
                {
                    "fingerprint": m["fingerprint"],
                    "label": m["label"],
                    "environment": environment,
                    "runs": n_runs.get(m["fingerprint"], 0),
                }
            )
        return {
            "runs": out_runs,
            "machines": out_machines,
            "suites": {k: suites[k] for k in sorted(suites)},
        }

    def rows(self, metric: str | None = None) -> list[dict[str, Any]]:
        """Every point joined with its run and machine, as plain dicts (oldest run first)."""
        q = (
            sa.select(
                runs.c.run_key,
                runs.c.commit_sha,
                runs.c.dirty,
                runs.c.created,
                runs.c.source,
                machines.c.fingerprint.label("machine"),
                machines.c.label.label("machine_label"),
                points.c.suite,
                points.c.benchmark,
                points.c.params,
                points.c.metric,
                points.c.value,
                points.c.ci_low,
                points.c.ci_high,
                points.c.n,
            )
            .select_from(points.join(runs).join(machines))
            .order_by(runs.c.created, runs.c.id)
        )
        if metric is not None:
            q = q.where(points.c.metric == metric)
        with self._tx() as conn:
            out = [dict(r._mapping) for r in conn.execute(q)]
        for r in out:
            created = r["created"]
            if isinstance(created, datetime) and created.tzinfo is None:
                r["created"] = created.replace(tzinfo=UTC)  # SQLite returns naive times
        return out


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE: take the write lock at BEGIN, so two writers queue on the busy timeout instead
    # of deadlocking when both upgrade a read lock
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_store(db: str | Path, *, create: bool = True) -> Store:
    """Open (creating and migrating as needed) the history database ``db``.

    ``create=False`` (the commands that only read): a missing or empty SQLite file, or a
    database without the store's schema, raises :class:`StoreUnavailable` saying so instead
    of creating one. Raises :class:`StoreUnavailable` when it cannot be reached or opened.
    """
    url = database_url(db)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            path = Path(url.database)
            parent = path.parent
            if not parent.is_dir():
                raise StoreUnavailable(f"database {url.database}: folder {parent} does not exist")
            if not create and (not path.is_file() or path.stat().st_size == 0):
                raise StoreUnavailable(
                    f"no history store at {path}: `samplemind-bench history add RESULTS_DIR "
                    f"--db {path}` creates it"
                )
            check_sqlite_file(path)
        engine = sa.create_engine(
            url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, poolclass=sa.pool.NullPool
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    elif url.get_backend_name() == "postgresql":
        try:
            engine = sa.create_engine(
                url, connect_args={"connect_timeout": 10}, poolclass=sa.pool.NullPool
            )
        except ModuleNotFoundError as exc:
            raise StoreUnavailable(
                f"database {redacted(url)}: the PostgreSQL driver is missing ({exc.name}): "
                "pip install 'samplemind-core[history]'"
            ) from None
    else:
        raise StoreUnavailable(
            f"database {redacted(url)}: only SQLite (a file path) and postgresql:// are supported"
        )
    store = Store(engine, url)
    try:
        store.migrate(create=create)
    except sa.exc.OperationalError as exc:
        store.close()
        raise StoreUnavailable(
            f"database {redacted(url)}: {str(exc.orig).strip() or exc}"
        ) from None
    except sa.exc.DBAPIError as exc:
        store.close()
        raise StoreCorrupt(f"database {redacted(url)}: {str(exc.orig).strip() or exc}") from None
    except HistoryError:
        store.close()
        raise
    return store
