"""The run file (SPEC 11): its format, its liveness rule, and the checks that open one.

``run_writer`` writes run files and ``run_reader`` reads them; both build on this module, which
imports neither. Needs the standard library only.

File format (schema 1)
----------------------
Standard library ``sqlite3``; ``PRAGMA application_id`` = ``APPLICATION_ID`` (ASCII "nnmd") tells a
run file from any other SQLite file; ``PRAGMA user_version`` = ``SCHEMA`` (a reader refuses a
newer one). WAL journal mode while the run is written (one writer, readers never blocked, a
killed writer loses only uncommitted batches); on a clean close the writer checkpoints and, when
no reader has the file open, turns it back into a single self-contained file (journal mode
DELETE), which reads without -wal/-shm side files, also from read-only media.

``meta(id, key UNIQUE, value)``
    One row per item of ``info``, the value as JSON. ``id`` is AUTOINCREMENT: an updated item gets
    a new, larger id, so a reader tailing the file reads only ``id > last seen``. Keys the store
    keeps itself: ``started``, ``heartbeat``, ``updated`` (unix times), ``pid``, ``pid_started``
    (the process's start time in clock ticks, Linux), ``host``, ``boot_id`` (Linux), ``status``
    ("running" | "finished" | "interrupted"), ``last_step`` (newest step recorded),
    ``write_error`` (why the writer stopped early, if it did).
``layouts(id, analysis, layers, ranks, dtype, shape)``
    One per (analysis, ordered layer set, dtype, per-layer shape); ``layers`` a JSON list of
    names, ``ranks`` each layer's position in its analysis's order of first appearance,
    ``dtype`` a NumPy dtype string ("<f4", "<i8", "|b1", ...), ``shape`` the JSON shape of one
    layer's value. Sample rows carry no names.
``samples(id, layout, count, event, events, step, stride, steps, times, data)``
    ``count`` consecutive records of one layout: their training steps, ``step + stride * k``
    when ``steps`` is NULL (a monitor samples every ``every`` steps), else ``steps`` int64
    [count]; ``times`` float64 [count] (``time.time()`` seconds); ``data`` the values
    [count, L, *shape] in the layout's dtype, raw little-endian bytes (never pickled). Records
    are numbered per analysis (0, 1, 2, ... in recording order): the row holds records
    ``event .. event+count-1`` when ``events`` is NULL, else those listed in ``events`` (int64
    [count]). A row grows to about 64 KiB of values (``run_writer.ROW_BYTES``): until then
    each commit that adds records of its layout replaces it by a longer copy under a new, larger
    id (``id`` is AUTOINCREMENT), so a tailing reader reads the rows above the last id it saw and
    skips the record numbers it already has. A record whose
    layers differ in shape or dtype (spectra of different lengths) spans several layouts, hence
    rows, always written in the same commit; the reader joins them by record number, so a
    reopened ``History`` has exactly one event per original record, with its step and time.
``notes(id, kind, step, analysis, layer, message, traceback)``
    Errors and notices (``MonitorError``), ``kind`` "error" or "notice".

Floating values are stored as float32 whatever their precision: a reopened run's history holds
float32-rounded values (float64 beyond the float32 range becomes inf). Integer and boolean
arrays keep their dtype (``History`` holds them as float64, as it does live). Steps and times are
exact.

Liveness: the writer refreshes ``meta.heartbeat`` every ``HEARTBEAT`` (5) s. A reader calls a run
"running" while its recorded status is "running" and either the heartbeat is younger than
``stale_after`` (15 s; a reader that has seen the heartbeat change judges by its own clock,
which survives clock skew between hosts) or the writing process is alive on this host (same host
name and boot, the pid alive and started at the recorded time: a reused pid does not count);
else "interrupted". "finished" is written by ``RunWriter.close``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

__all__ = ["SCHEMA", "APPLICATION_ID", "SUFFIX", "HEARTBEAT", "STALE_AFTER", "RESERVED_KEYS",
           "DTYPES", "SQLITE_MAGIC", "RunFileError", "create_tables", "this_process", "run_status",
           "open_checked", "read_meta", "peek"]

SCHEMA = 1                      # PRAGMA user_version of the files written and read
APPLICATION_ID = 0x6E6E6D64     # PRAGMA application_id: ASCII "nnmd"
SUFFIX = ".nnmodes"
HEARTBEAT = 5.0                 # seconds between the writer's heartbeats
STALE_AFTER = 15.0              # a heartbeat older than this no longer shows the run running
# meta keys the store keeps itself (a writer's caller cannot set them)
RESERVED_KEYS = frozenset({"started", "heartbeat", "updated", "pid", "pid_started", "host",
                           "boot_id", "status", "last_step", "write_error", "schema"})
# dtypes of stored values: float32 for floats, integers and booleans as they are
DTYPES = frozenset({"<f4", "<f8", "<f2", "|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8",
                    "<u8"})
SQLITE_MAGIC = b"SQLite format 3\x00"
_TABLES = ("meta", "layouts", "samples", "notes")

_SCHEMA_SQL = """
CREATE TABLE meta(id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
                  value TEXT NOT NULL);
CREATE TABLE layouts(id INTEGER PRIMARY KEY, analysis TEXT NOT NULL, layers TEXT NOT NULL,
                     ranks TEXT NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL);
CREATE TABLE samples(id INTEGER PRIMARY KEY AUTOINCREMENT, layout INTEGER NOT NULL,
                     count INTEGER NOT NULL, event INTEGER NOT NULL, events BLOB,
                     step INTEGER NOT NULL, stride INTEGER NOT NULL, steps BLOB,
                     times BLOB NOT NULL, data BLOB NOT NULL);
CREATE TABLE notes(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, step INTEGER, analysis TEXT,
                   layer TEXT, message TEXT NOT NULL, traceback TEXT NOT NULL DEFAULT '');
"""


class RunFileError(ValueError):
    """A path that cannot be opened as a run (missing, not a run, newer, corrupt), or that a
    writer refuses (it holds a run, or something else, already)."""


def create_tables(db: sqlite3.Connection) -> None:
    """Make the empty database ``db`` a run file of this schema, without meta items."""
    db.execute("PRAGMA page_size = 2048")   # (4096 wastes more in partly filled leaf pages)
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")   # before any table
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {SCHEMA}")
    db.executescript("BEGIN;" + _SCHEMA_SQL + "COMMIT;")


# -- liveness --------------------------------------------------------------------------------------------


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time in clock ticks since boot)`` of a Linux process, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return fields[0].decode(), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _process_alive(pid, started) -> bool:
    """Whether process ``pid`` of this host is alive (not a zombie) and, where its start time
    was recorded (Linux), started then: a pid reused by another process does not count."""
    if os.name != "posix" or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False     # (on Windows os.kill(pid, 0) would terminate the process)
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass             # alive, another user's
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return not os.path.exists("/proc/self/stat")    # no /proc: the signal said alive
    state, ticks = stat
    if state in ("Z", "X"):
        return False
    return started is None or ticks == started


def this_process() -> dict:
    """The meta items that let a reader of this host tell whether this process is alive."""
    stat = _proc_stat(os.getpid())
    return {"pid": os.getpid(), "pid_started": stat[1] if stat else None,
            "host": socket.gethostname(), "boot_id": _boot_id()}


def run_status(meta: dict, now: float, stale_after: float, heartbeat_seen: float | None = None) -> str:
    """A run's status from its meta items (the module docstring's liveness rule).
    ``heartbeat_seen``: when (``time.monotonic()``) this reader last saw the heartbeat change, if
    it did."""
    recorded = meta.get("status")
    if recorded in ("finished", "interrupted"):
        return recorded
    if recorded != "running":
        return "interrupted"
    heartbeat = meta.get("heartbeat")
    if isinstance(heartbeat, (int, float)) and now - heartbeat < stale_after:
        return "running"
    if heartbeat_seen is not None and time.monotonic() - heartbeat_seen < stale_after:
        return "running"
    if meta.get("host") == socket.gethostname() and meta.get("boot_id") == _boot_id() \
            and _process_alive(meta.get("pid"), meta.get("pid_started")):
        return "running"
    return "interrupted"


# -- opening ---------------------------------------------------------------------------------------------


def _connect_readonly(path: str) -> sqlite3.Connection:
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA query_only = 1")
        db.execute("PRAGMA busy_timeout = 2000")
        db.execute("PRAGMA application_id").fetchone()   # reads the file: fails here if it cannot
        return db
    except sqlite3.OperationalError:
        # A WAL-mode file with no -wal/-shm beside it in a folder we cannot write (a copied run
        # on read-only media): nothing writes it, so it can be read as immutable.
        if os.path.exists(path + "-wal"):
            raise
        db = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA query_only = 1")
        return db


def open_checked(path) -> tuple[str, sqlite3.Connection]:
    """A read-only connection to the run file ``path``: RunFileError if it is not one."""
    path = os.fspath(Path(path).expanduser().absolute())
    if not os.path.exists(path):
        raise RunFileError(f"no run file at {path}: no such file")
    if not os.path.isfile(path):
        raise RunFileError(f"{path} is not a run file: not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise RunFileError(f"cannot read the run file {path}: {exc}") from exc
    if not head.startswith(SQLITE_MAGIC):
        raise RunFileError(f"{path} is not a run file: not an SQLite database"
                           + (" (the file is empty)" if not head else ""))
    try:
        db = _connect_readonly(path)
    except sqlite3.OperationalError as exc:      # permissions, locking, I/O
        raise RunFileError(f"cannot open the run file {path}: {exc}") from exc
    except sqlite3.Error as exc:                 # SQLITE_CORRUPT, SQLITE_NOTADB
        raise RunFileError(f"{path} is a corrupt run file (or not a run file): {exc}") from exc
    try:
        app = db.execute("PRAGMA application_id").fetchone()[0]
        schema = db.execute("PRAGMA user_version").fetchone()[0]
        if app != APPLICATION_ID:
            raise RunFileError(f"{path} is an SQLite database but not a nnmodes_widgets run file "
                               f"(application_id {app}, a run file has {APPLICATION_ID})")
        if schema > SCHEMA:
            raise RunFileError(f"{path} was written by a newer nnmodes_widgets: schema {schema}, "
                               f"this version reads up to {SCHEMA}; upgrade nnmodes_widgets to read it")
        if schema < 1:
            raise RunFileError(f"{path} is a corrupt run file: schema version {schema}")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = set(_TABLES) - tables
        if missing:
            raise RunFileError(f"{path} is a corrupt run file: no table {', '.join(sorted(missing))}")
    except RunFileError:
        db.close()
        raise
    except sqlite3.Error as exc:
        db.close()
        raise RunFileError(f"{path} is a corrupt run file (or not a run file): {exc}") from exc
    return path, db


def read_meta(db, after: int = 0) -> tuple[dict, int]:
    """Meta items with id above ``after``, and the largest id read."""
    items, last = {}, after
    for rowid, key, value in db.execute("SELECT id, key, value FROM meta WHERE id > ? ORDER BY id",
                                        (after,)):
        items[key] = json.loads(value)
        last = rowid
    return items, last


def peek(path) -> dict:
    """The meta items of a run file, without its samples."""
    path, db = open_checked(path)
    try:
        return read_meta(db)[0]
    except (sqlite3.Error, ValueError) as exc:
        raise RunFileError(f"{path} is a corrupt run file: {exc}") from exc
    finally:
        db.close()
