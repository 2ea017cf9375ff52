"""A damaged, foreign or wrong-version history store is refused by name (issue 23 item 5).

Every history command (``add``, ``changes``, ``report``) exits 2 naming the database, without
a traceback, and "stored" is only printed for rows the store gives back.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.history import cli as history_cli
from bench.history._ingest import read_run

RUN_A = Path(__file__).parent / "data" / "results" / "run_a"
BENCH = str(Path(sys.executable).with_name("samplemind-bench"))
COMMANDS = (("add", str(RUN_A)), ("changes",), ("report", "--out", "{out}"))


def _run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, str, str]:
    argv = [a.replace("{out}", str(tmp_path / "page")) for a in args]
    code = history_cli.main(argv, env={})
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _second_run(tmp_path: Path) -> Path:
    """run_a under another commit (a new run_key), so ``add`` has something to write."""
    folder = tmp_path / "run_b"
    shutil.copytree(RUN_A, folder)
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"aaaaaaaa', '"bbbbbbbb'))
    return folder


def _healthy_store(path: Path) -> None:
    from bench.history.store import open_store

    st = open_store(path)
    try:
        st.add(read_run(RUN_A))
    finally:
        st.close()
    conn = sqlite3.connect(path)
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
    conn.close()
    assert (busy, mode) == (0, "delete")  # every page in the main file, no WAL to mask damage
    assert not Path(f"{path}-wal").exists()


def _overwrite_page(path: Path, table: str, *, keep_header: bool) -> None:
    """Overwrite the root page of ``table`` with random bytes (the file header stays intact)."""
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    conn.close()
    assert root > 1  # page 1 holds the file header: never touched
    data = bytearray(path.read_bytes())
    start = (root - 1) * page_size + (8 if keep_header else 0)
    rng = random.Random(root)
    data[start : root * page_size] = bytes(
        rng.randrange(256) for _ in range(root * page_size - start)
    )
    path.write_bytes(bytes(data))
    conn = sqlite3.connect(path)
    try:  # the damage is there to be found (or the test would prove nothing)
        assert conn.execute("PRAGMA quick_check").fetchall() != [("ok",)]
    except sqlite3.DatabaseError:
        pass
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("table", "keep_header"),
    [
        ("runs", True),  # before the fix: "stored (181 figures)", then a raw DatabaseError
        ("points", False),
        ("sqlite_autoindex_points_1", True),
        ("machines", False),
    ],
)
def test_damaged_sqlite_store_is_refused_by_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, keep_header: bool
) -> None:
    db = tmp_path / "h.sqlite"
    _healthy_store(db)
    _overwrite_page(db, table, keep_header=keep_header)
    before = db.read_bytes()
    new_run = _second_run(tmp_path)
    for command in (("add", str(new_run)), *COMMANDS[1:]):
        code, out, err = _run(capsys, tmp_path, *command, "--db", str(db))
        assert code == 2, (command, out, err)
        assert str(db) in err and "damaged" in err, err
        assert "stored" not in out and "Traceback" not in err
    assert db.read_bytes() == before  # nothing written into the damaged file
    assert not (tmp_path / "page").exists()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"not a database at all, just text\n" * 200, "not an SQLite file"),
        (b"SQLite format 3\x00" + bytes(4080), "damaged"),  # header only, garbage after
    ],
)
def test_a_file_that_is_not_a_store_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, says: str
) -> None:
    db = tmp_path / "h.sqlite"
    db.write_bytes(content)
    for command in COMMANDS:
        code, _, err = _run(capsys, tmp_path, *command, "--db", str(db))
        assert code == 2 and str(db) in err and says in err, err
    assert db.read_bytes() == content


def test_foreign_and_wrong_schema_sqlite_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.history.store import SCHEMA_VERSION

    foreign = tmp_path / "app.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    code, _, err = _run(capsys, tmp_path, "add", str(RUN_A), "--db", str(foreign))
    assert code == 2 and "not a samplemind history store" in err and "users" in err, err
    assert sqlite3.connect(foreign).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'"
    ).fetchall() == [("users",)]  # no table of ours was added to someone else's file

    cases = {
        "empty-version": "DELETE FROM schema_version",
        "newer-version": f"UPDATE schema_version SET version = {SCHEMA_VERSION + 7}",
        "missing-table": "DROP TABLE points",
        "missing-column": "ALTER TABLE runs DROP COLUMN quick",
    }
    for name, sql in cases.items():
        db = tmp_path / f"{name}.sqlite"
        _healthy_store(db)
        conn = sqlite3.connect(db)
        conn.execute(sql)
        conn.commit()
        conn.close()
        for command in COMMANDS:
            code, out, err = _run(capsys, tmp_path, *command, "--db", str(db))
            assert code == 2 and str(db) in err, (name, command, err)
            assert "stored" not in out


def test_stored_is_said_only_of_rows_read_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store that loses rows inside the transaction (a trigger here) never reports "stored"."""
    from bench.history.store import open_store

    db = tmp_path / "h.sqlite"
    _healthy_store(db)
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TRIGGER lose AFTER INSERT ON points WHEN NEW.metric = 'time' "
        "BEGIN DELETE FROM points WHERE rowid = NEW.rowid; END"
    )
    conn.commit()
    conn.close()
    code, out, err = _run(capsys, tmp_path, "add", str(_second_run(tmp_path)), "--db", str(db))
    assert code == 2, (out, err)
    assert "stored" not in out and "read back" in err and str(db) in err
    st = open_store(db)
    try:
        assert st.counts()["runs"] == 1  # the transaction was rolled back whole
    finally:
        st.close()


def test_healthy_store_still_adds_and_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "h.sqlite"
    code, out, err = _run(capsys, tmp_path, "add", str(RUN_A), "--db", str(db))
    assert code == 0 and "stored (" in out, err
    code, out, err = _run(capsys, tmp_path, "add", str(_second_run(tmp_path)), "--db", str(db))
    assert code == 0 and "stored (" in out, err
    code, out, err = _run(capsys, tmp_path, "changes", "--db", str(db))  # report: test_history
    assert code == 0 and "change point(s) over 2 commits" in out, err


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_damaged_store_through_the_console_script(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    _healthy_store(db)
    _overwrite_page(db, "runs", keep_header=True)
    env = {k: v for k, v in os.environ.items() if k != "SAMPLEMIND_HISTORY"}
    res = subprocess.run(
        [BENCH, "history", "add", str(_second_run(tmp_path)), "--db", str(db)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert res.returncode == 2, res
    assert str(db) in res.stderr and "damaged" in res.stderr
    assert "Traceback" not in res.stderr and "stored" not in res.stdout


@pytest.mark.postgres
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_postgres_wrong_schema_is_refused(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlalchemy as sa

    from bench.history.store import SCHEMA_VERSION, open_store

    st = open_store(postgres_url)
    try:
        st.add(read_run(RUN_A))
        engine = st.engine
        for sql, says in (
            (f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}", "schema version"),
            ("DELETE FROM schema_version", "schema_version table is empty"),
            ("DROP TABLE schema_version", "not a samplemind history store"),
        ):
            with engine.begin() as conn:
                conn.execute(sa.text(sql))
            for command in COMMANDS:
                code, out, err = _run(capsys, tmp_path, *command, "--db", postgres_url)
                assert code == 2 and says in err and "postgresql://" in err, (sql, command, err)
                assert "stored" not in out and "Traceback" not in err
            if sql.startswith("DROP"):
                break
            with engine.begin() as conn:  # back to a healthy store for the next case
                conn.execute(sa.text("DELETE FROM schema_version"))
                conn.execute(sa.text(f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION})"))
    finally:
        st.close()
