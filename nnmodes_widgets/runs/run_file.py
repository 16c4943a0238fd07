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

Reading creates and changes no file (``open_checked``): a file is recognised by its first 100
bytes (SQLite's magic, ``application_id``, ``user_version``) before SQLite opens it, read-only;
one with a -wal and a -shm beside it (a live run, or a killed one) is read through them with the
-shm mapped read-only, any other as immutable (no side files made, no locks taken). Every string
or blob read is bounded by the bytes of the file and its -wal.

Liveness: the writer refreshes ``meta.heartbeat`` every ``HEARTBEAT`` (5) s. A reader calls a run
"running" while its recorded status is "running" and either the heartbeat is younger than
``stale_after`` (15 s; a reader that has seen the heartbeat change judges by its own clock,
which survives clock skew between hosts) or the writing process is alive on this host (same host
name and boot, the pid alive and started at the recorded time: a reused pid does not count);
else "interrupted". "finished" is written by ``RunWriter.close``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import stat
import time
from pathlib import Path
from typing import NamedTuple

__all__ = ["SCHEMA", "APPLICATION_ID", "SUFFIX", "HEARTBEAT", "STALE_AFTER", "RESERVED_KEYS",
           "DTYPES", "SQLITE_MAGIC", "HEADER_BYTES", "RunFileError", "Opened", "create_tables",
           "finite", "this_process", "run_status", "brief", "refused", "header_problem", "read_header",
           "file_key", "file_bytes", "bound_lengths", "open_checked", "read_meta", "peek"]

SCHEMA = 1                      # PRAGMA user_version of the files written and read
APPLICATION_ID = 0x6E6E6D64     # PRAGMA application_id: ASCII "nnmd"
SUFFIX = ".nnmodes"
HEARTBEAT = 5.0                 # seconds between the writer's heartbeats
STALE_AFTER = 15.0              # a heartbeat older than this no longer shows the run running
# meta keys the store keeps itself (a writer's caller cannot set them)
RESERVED_KEYS = frozenset({"started", "heartbeat", "updated", "pid", "pid_started", "host",
                           "boot_id", "status", "last_step", "write_error", "schema"})
# dtypes of stored values, exactly those the writer writes: float32 for floats, integers and
# booleans as they are, little-endian (another valid dtype, ">f4" or "<f8", is not a run's)
DTYPES = frozenset({"<f4", "|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8"})
SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100              # SQLite's database header: what tells a run file before opening it
_WAL_HEADER_BYTES = 32          # a -wal no longer than its header holds no commit
_WAL_MAGIC = 0x377F0682         # a -wal's first 4 bytes (| 1: its checksums big-endian)
# the columns of each table that a reader reads
_COLUMNS = {
    "meta": frozenset({"id", "key", "value"}),
    "layouts": frozenset({"id", "analysis", "layers", "ranks", "dtype", "shape"}),
    "samples": frozenset({"id", "layout", "count", "event", "events", "step", "stride", "steps",
                          "times", "data"}),
    "notes": frozenset({"id", "kind", "step", "analysis", "layer", "message", "traceback"}),
}
# read a header: never through a link, never waiting on a FIFO
_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))

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
    writer refuses (it holds a run, or something else, already). ``path``: the file, when known;
    ``reason``: what is wrong with it, without the path (what a listing shows)."""

    def __init__(self, message: str, *, path: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.path = path
        self.reason = message if reason is None else reason


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
    if os.name != "posix" or not isinstance(pid, int) or isinstance(pid, bool) \
            or not 0 < pid < 2 ** 31:
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
    return started is None or (isinstance(started, int) and ticks == started)


def finite(value) -> float | None:
    """``value`` as a float when it is a finite real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:        # an int beyond the floats
        return None
    return value if math.isfinite(value) else None


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
    heartbeat = finite(meta.get("heartbeat"))
    if heartbeat is not None and now - heartbeat < stale_after:
        return "running"
    if heartbeat_seen is not None and time.monotonic() - heartbeat_seen < stale_after:
        return "running"
    if meta.get("host") == socket.gethostname() and meta.get("boot_id") == _boot_id() \
            and _process_alive(meta.get("pid"), meta.get("pid_started")):
        return "running"
    return "interrupted"


# -- opening ---------------------------------------------------------------------------------------------


class Opened(NamedTuple):
    """A run file opened read-only (``open_checked``)."""

    path: str                   # as the caller named it, absolute
    real: str                   # its real path (links resolved): the file SQLite reads
    db: sqlite3.Connection
    wal_unread: bool            # its -wal holds commits that could not be read (no -shm beside it)


def brief(value) -> str:
    """``repr(value)``, cut short: a crafted value may be megabytes long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def refused(path, reason: str) -> RunFileError:
    """The RunFileError saying what is wrong (``reason``) with the file ``path``."""
    path = os.fspath(path)
    return RunFileError(f"{path}: {reason}", path=path, reason=reason)


def _identity_problem(app: int, schema: int) -> str | None:
    """What makes a database of this application_id and user_version not a run file this
    version reads; None when it is one."""
    if app != APPLICATION_ID:
        return (f"an SQLite database but not a nnmodes_widgets run file (application_id {app}, a "
                f"run file has {APPLICATION_ID})")
    if schema > SCHEMA:
        return (f"written by a newer nnmodes_widgets: schema {schema}, this version reads up to "
                f"{SCHEMA}; upgrade nnmodes_widgets to read it")
    if schema < 1:
        return f"corrupt: schema version {schema}"
    return None


def header_problem(head: bytes) -> str | None:
    """What makes ``head``, the first ``HEADER_BYTES`` of a file, not the header of a run file
    this version reads; None when it is one."""
    if not head:
        return "not an SQLite database (the file is empty)"
    if len(head) < HEADER_BYTES or not head.startswith(SQLITE_MAGIC):
        return "not an SQLite database"
    problem = _identity_problem(int.from_bytes(head[68:72], "big", signed=True),
                                int.from_bytes(head[60:64], "big", signed=True))
    if problem:
        return problem
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    if page < 512 or page & (page - 1) or head[18] not in (1, 2) or head[19] not in (1, 2):
        return "corrupt: malformed SQLite header"
    return None


def read_header(real: str, shown=None) -> bytes:
    """The first ``HEADER_BYTES`` of the regular file at the real path ``real``; a FIFO, a device
    or a link (put there since the path was resolved) is never opened. RunFileError naming
    ``shown`` (default ``real``) when there is no such file."""
    shown = real if shown is None else shown
    try:
        st = os.lstat(real)
        if not stat.S_ISREG(st.st_mode):
            raise refused(shown, "not a regular file")
        fd = os.open(real, _READ_FLAGS)
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise refused(shown, "replaced while being read")
            head = os.read(fd, HEADER_BYTES)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise refused(shown, "no such file") from None
    except OSError as exc:
        raise refused(shown, f"cannot be read: {exc.strerror or exc}") from None
    return head


def _side_file(real: str, suffix: str) -> os.stat_result | None:
    """The status of a side file of SQLite's beside ``real``, if it is a regular file (a link is
    not used: it could point anywhere)."""
    try:
        st = os.lstat(real + suffix)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def file_key(real: str, st: os.stat_result) -> tuple:
    """What changes when the run file ``real`` (status ``st``) changes: its device, inode, size
    and modification time, and the size and modification time of its -wal (a live run commits
    to its -wal; the file itself changes only at checkpoints)."""
    wal = _side_file(real, "-wal")
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
            None if wal is None else (wal.st_ino, wal.st_size, wal.st_mtime_ns))


def file_bytes(real: str) -> int:
    """The bytes of the run file ``real`` and its -wal: what any value read from it is within."""
    return sum(st.st_size for st in (_side_file(real, ""), _side_file(real, "-wal")) if st is not None)


def bound_lengths(db: sqlite3.Connection, real: str) -> None:
    """Let no string, blob or row read through ``db`` be longer than twice the bytes of the run
    file ``real`` and its -wal (a live writer may commit between this and the read), or 1 MiB: a
    crafted length is refused (SQLITE_TOOBIG) before it is allocated."""
    db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(2 * file_bytes(real), 1 << 20))


def _wal_readable(real: str, size: int) -> bool:
    """Whether the -wal of ``real`` (of ``size`` bytes) is empty (a live writer's before its
    first commit) or holds frames after a header SQLite reads (its magic, a page size it takes).
    Any other -wal has no frame SQLite would read, and with a -shm that no writer holds SQLite
    retries it for seconds before it gives up."""
    if size == 0:
        return True
    if size <= _WAL_HEADER_BYTES:
        return False
    try:
        fd = os.open(real + "-wal", _READ_FLAGS)
        try:
            head = os.read(fd, _WAL_HEADER_BYTES)
        finally:
            os.close(fd)
    except OSError:
        return False
    page = int.from_bytes(head[8:12], "big")
    return (len(head) == _WAL_HEADER_BYTES and int.from_bytes(head[:4], "big") & ~1 == _WAL_MAGIC
            and 512 <= page <= 65536 and not page & (page - 1))


def _connect(real: str, wal_header: bool) -> tuple[sqlite3.Connection, bool]:
    """A read-only connection to ``real`` that creates and changes no file, and whether commits
    in its -wal were left unread.

    SQLite creates a WAL-mode file's -wal and -shm when they are missing, and a reader writes its
    read marks into the -shm. So: a file with a -wal and a -shm (a live run, or one whose writer
    was killed) is read through them with ``readonly_shm`` (the -shm mapped read-only: a live
    writer's index is used as it is, else SQLite rebuilds the index from the -wal in private
    memory); any other file as ``immutable`` (no locks, no side files: nothing writes it). A -wal
    without its -shm cannot be read without creating one: the commits in it are left unread."""
    wal, shm = _side_file(real, "-wal"), _side_file(real, "-shm")
    readable_wal = wal_header and wal is not None and _wal_readable(real, wal.st_size)
    through_wal = readable_wal and shm is not None
    query = "?mode=ro&readonly_shm=1" if through_wal else "?mode=ro&immutable=1"
    db = sqlite3.connect(Path(real).as_uri() + query, uri=True, timeout=2.0, isolation_level=None,
                         check_same_thread=False)
    try:
        db.execute("PRAGMA trusted_schema = OFF")
        db.execute("PRAGMA cell_size_check = ON")     # corruption found early, not acted on
        bound_lengths(db, real)
    except BaseException:
        db.close()
        raise
    return db, readable_wal and shm is None and wal.st_size > 0


def _schema_problem(db: sqlite3.Connection) -> str | None:
    """What makes the opened file's schema not that of a run file; None when it is."""
    problem = _identity_problem(*db.execute(
        "SELECT * FROM pragma_application_id, pragma_user_version").fetchone())
    if problem:       # (the header read before opening may predate the -wal's page 1)
        return problem
    columns: dict[str, dict[str, int]] = {}       # table -> column -> hidden (generated: not 0)
    for table, column, hidden in db.execute(
            "SELECT m.name, c.name, c.hidden FROM sqlite_master AS m, "
            "pragma_table_xinfo(m.name) AS c WHERE m.type = 'table'"):
        columns.setdefault(table, {})[column] = hidden
    missing = set(_COLUMNS) - set(columns)
    if missing:
        return f"corrupt: no table {', '.join(sorted(missing))}"
    for table, wanted in _COLUMNS.items():
        absent = wanted - set(columns[table])
        if absent:
            return f"corrupt: table {table} has no column {', '.join(sorted(absent))}"
        if any(columns[table].values()):        # generated columns: computed when read
            return f"corrupt: table {table} has generated columns"
    return None


def open_checked(path) -> Opened:
    """``path`` opened read-only (``Opened``), creating and changing no file: RunFileError (what
    is wrong with it) if it is not a run file this version reads."""
    path = os.fspath(Path(path).expanduser().absolute())
    real = os.path.realpath(path)
    head = read_header(real, path)
    problem = header_problem(head)
    if problem:
        raise refused(path, problem)
    try:
        db, unread = _connect(real, wal_header=head[18] == 2)
    except sqlite3.Error as exc:
        raise refused(path, f"cannot be opened: {exc}") from exc
    try:
        problem = _schema_problem(db)
    except (sqlite3.Error, ValueError, OverflowError) as exc:     # SQLITE_CORRUPT, SQLITE_NOTADB
        problem = f"corrupt: {exc}"
    if problem:
        db.close()
        raise refused(path, problem)
    return Opened(path, real, db, unread)


def read_meta(db, after: int = 0, keys=None) -> tuple[dict, int]:
    """Meta items with id above ``after`` (only ``keys``, when given), and the largest id read.
    ValueError for a malformed item."""
    sql, args = "SELECT id, key, value FROM meta WHERE id > ?", [after]
    if keys is not None:
        keys = list(keys)
        sql += f" AND key IN ({', '.join('?' * len(keys))})"
        args += keys
    items, last = {}, after
    for rowid, key, value in db.execute(sql + " ORDER BY id", args):
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"meta row {rowid}: key and value must be text, not {brief(key)}: "
                             f"{brief(value)}")
        try:
            items[key] = json.loads(value)
        except RecursionError:
            raise ValueError(f"meta item {brief(key)} is nested too deeply") from None
        except ValueError as exc:
            raise ValueError(f"meta item {brief(key)} is not JSON: {exc}") from None
        last = rowid
    return items, last


def peek(path, keys=None) -> dict:
    """The meta items of a run file (only ``keys``, when given), without its samples."""
    opened = open_checked(path)
    try:
        return read_meta(opened.db, keys=keys)[0]
    except (sqlite3.Error, ValueError) as exc:
        raise refused(opened.path, f"corrupt: {exc}") from exc
    finally:
        opened.db.close()
