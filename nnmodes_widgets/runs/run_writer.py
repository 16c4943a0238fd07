"""Recording a run to its file (SPEC 11): ``RunWriter``.

The caller (the training thread, the worker) only queues; a writer thread packs the records into
sample rows and commits them, and keeps the heartbeat (file format and liveness: ``run_file``).
Needs the standard library and NumPy only.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sqlite3
import sys
import threading
import time
import traceback as _traceback
import uuid
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .history import ANALYSES
from .run_file import (HEARTBEAT, RESERVED_KEYS, STALE_AFTER, RunFileError, create_tables, peek,
                       run_status, this_process)
from .run_state import MonitorError
from ..version import __version__

__all__ = ["RunWriter", "COMMIT_EVERY", "ROW_BYTES", "MAX_VALUE_BYTES", "exit_status"]

COMMIT_EVERY = 1.0              # seconds between the writer's commits (SPEC 11: at least every 2 s)
ROW_BYTES = 64 << 10            # data bytes of one sample row, about (one record may exceed it)
MAX_VALUE_BYTES = 256 << 20     # a record of one layout above this is not stored (a note says so)
_ANALYSES = frozenset(ANALYSES)
_NOTE_KINDS = ("error", "notice")
_SAMPLE, _NOTE, _INFO = 0, 1, 2
_DISCARDED = "discarded"        # closing without a status: the file is removed
DISCARD_TIMEOUT = 10.0          # s discard() waits for the writer thread to let go of the file
_open_writers: set[RunWriter] = set()
_open_writers_lock = threading.Lock()


# -- JSON of the info ------------------------------------------------------------------------------------


def _jsonable(value):
    """``json.dumps`` default: NumPy scalars and arrays, sets, paths; anything else as its repr."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "_asdict"):
        return value._asdict()
    if hasattr(value, "__dataclass_fields__"):
        return {name: getattr(value, name) for name in value.__dataclass_fields__}
    return repr(value)


def _dumps(value) -> str:
    """JSON text of an info value (NaN and inf as the JSON extensions Python reads back); a
    value JSON cannot hold (a circular one) as its repr."""
    try:
        return json.dumps(value, default=_jsonable)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(repr(value))


# -- values -> rows --------------------------------------------------------------------------------------


def _as_stored(layer, value) -> np.ndarray:
    """A value as stored: float32 for floats, the dtype itself (little-endian) for integers and
    booleans. TypeError for anything that is not a number array."""
    if not isinstance(layer, str):
        raise TypeError(f"layer names must be strings, got {type(layer).__name__}")
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind == "f":
        return array.astype("<f4", copy=False)
    if kind in "iu":
        return array.astype(array.dtype.newbyteorder("<"), copy=False)
    if kind == "b":
        return array.astype("|b1", copy=False)
    raise TypeError(f"value of layer {layer!r} has dtype {array.dtype}: not a real number array")


class _Chunk:
    """Records of one layout gathered for one sample row. A row that is not full stays open: the
    next commit that adds records of its layout replaces it (deleted, inserted anew under a new,
    larger id) until it holds ``ROW_BYTES``; so rows stay large however few records a commit
    holds, and the per-row overhead of SQLite stays small beside the values."""

    __slots__ = ("events", "steps", "times", "data", "rowid", "dirty")

    def __init__(self):
        self.events, self.steps, self.times = [], [], []
        self.data = bytearray()
        self.rowid: int | None = None    # the row written last for it, if any
        self.dirty = False               # records added since

    def add(self, event: int, step: int, when: float, data: np.ndarray) -> None:
        self.events.append(event)
        self.steps.append(step)
        self.times.append(when)
        self.data += data.tobytes()
        self.dirty = True

    def write(self, db, layout: int) -> None:
        count = len(self.events)
        events = np.asarray(self.events, dtype="<i8")
        steps = np.asarray(self.steps, dtype="<i8")
        first, step = int(events[0]), int(steps[0])
        stride = int(steps[1] - steps[0]) if count > 1 else 0
        if self.rowid is not None:
            db.execute("DELETE FROM samples WHERE id = ?", (self.rowid,))
        self.rowid = db.execute(
            "INSERT INTO samples(layout, count, event, events, step, stride, steps, times, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (layout, count, first,
             None if (events == first + np.arange(count)).all() else events.tobytes(),
             step, stride,
             None if (steps == step + stride * np.arange(count)).all() else steps.tobytes(),
             np.asarray(self.times, dtype="<f8").tobytes(), bytes(self.data))).lastrowid
        self.dirty = False


# -- writing ---------------------------------------------------------------------------------------------


def _writer_connection(path: str) -> sqlite3.Connection:
    """The writer's connection (a seam: tests wrap it to inject faults)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 5000")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")     # WAL: durable against a killed process
    return db


class RunWriter:
    """Record one run to the SQLite file ``path`` (format: ``run_file``).

    The constructor creates the file (and its parent folders) with ``info`` — whatever the caller
    wants kept: model class, parameter shapes, settings (``every``, ``budget``, ``rwc_kind``,
    ``analyses``, ...), package version, ``layers``, ``probe_facts`` as a dict — plus ``started``,
    ``heartbeat``, ``pid``, ``host``, ``status`` "running". It raises ``RunFileError`` when
    ``path`` exists: a run being written (two monitors on one path), a finished or interrupted
    run (never overwritten), or any other file; and when the file cannot be created.

    From then on nothing raises: ``record``, ``add_note`` and ``update_info`` only enqueue (O(1),
    no I/O; values are kept as given, not copied: pass arrays you will not mutate); a writer
    thread commits what is queued every ``commit_every`` s (1; at ``flush()`` and ``close()``
    too) and refreshes the heartbeat every ``heartbeat`` s (5). A write error (full disk, a
    folder gone read-only, anything from SQLite) stops the recording: what was committed stays
    and the file still opens; ``on_error(exc)`` is called once (without one, a RuntimeWarning),
    later records are dropped. A record the store cannot take (a layer whose shape changed, a
    value that is not a real number array) is left out and an error note in the file says why;
    an unknown analysis name is refused at once (ValueError), as ``History.record`` does. Keys of
    ``info`` that the store keeps itself (``started``, ``status``, ...) are ignored.

    ``begin()`` and ``end(token)`` bracket each commit on the writer thread (a monitor's pacer:
    its commits are background work, within the training's budget).

    At interpreter exit a writer still open is closed: "finished", or "interrupted" when a
    script ends with an uncaught exception.
    """

    def __init__(self, path, info: dict | None = None, *,
                 on_error: Callable[[BaseException], None] | None = None,
                 commit_every: float = COMMIT_EVERY, heartbeat: float = HEARTBEAT,
                 begin: Callable[[], object] = lambda: None,
                 end: Callable[[object], None] = lambda token: None):
        if info is not None and not isinstance(info, dict):
            raise TypeError(f"info must be a dict, got {type(info).__name__}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable or None, got {type(on_error).__name__}")
        for name, value in (("commit_every", commit_every), ("heartbeat", heartbeat)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.path = os.fspath(Path(path).expanduser().absolute())
        self._on_error = on_error
        self._begin, self._end = begin, end
        self._commit_every = float(commit_every)
        self._heartbeat_every = float(heartbeat)
        self._pid = os.getpid()
        now = time.time()
        meta = {k: v for k, v in (info or {}).items() if k not in RESERVED_KEYS}
        if not all(isinstance(k, str) for k in meta):
            raise TypeError("info keys must be strings")
        meta.setdefault("version", __version__)
        meta.update(this_process(), started=now, heartbeat=now, updated=now, status="running",
                    last_step=None)
        self._create(meta)
        try:
            self._db = _writer_connection(self.path)
        except (sqlite3.Error, OSError) as exc:
            for side in ("", "-wal", "-shm"):     # the file just made, with nothing in it yet
                try:
                    os.unlink(self.path + side)
                except OSError:
                    pass
            raise RunFileError(f"cannot write the run file {self.path}: {exc}") from exc

        self._queue: deque = deque()
        self._cond = threading.Condition()
        self._flush_requested = 0
        self._flushed = 0
        self._closing: str | None = None
        self._stopped = False            # failed or closed: records are dropped
        self.error: BaseException | None = None
        self._last_heartbeat = time.monotonic()
        self._last_step: int | None = None
        self._layouts: dict[tuple, int] = {}           # (analysis, layers, dtype, shape) -> id
        self._ranks: dict[str, dict[str, int]] = {}     # analysis -> layer -> first-appearance rank
        self._shapes: dict[str, dict[str, tuple]] = {}  # analysis -> layer -> shape
        self._events: dict[str, int] = {}               # analysis -> records numbered so far
        self._open_rows: dict[int, _Chunk] = {}         # layout -> its row that is not full yet
        self._thread = threading.Thread(target=self._run, name=f"nnmodes-run-writer:{Path(self.path).name}",
                                        daemon=True)
        with _open_writers_lock:
            _open_writers.add(self)
        self._thread.start()

    # -- creation --------------------------------------------------------------------------------------

    def _create(self, meta: dict) -> None:
        """Create the file complete (schema, pragmas, info) under a temporary name, then link it to
        ``path``: the link fails if ``path`` exists (two writers cannot both win), and a reader
        never sees a half-made file."""
        target = Path(self.path)
        if os.path.lexists(target):
            raise RunFileError(_refusal(self.path))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFileError(f"cannot create the folder of the run file {self.path}: {exc}") from exc
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            try:
                db = sqlite3.connect(tmp, isolation_level=None)
                try:
                    create_tables(db)
                    db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                                   [(k, _dumps(v)) for k, v in meta.items()])
                    db.execute("PRAGMA journal_mode = WAL")      # persistent, in the header
                finally:
                    db.close()
            except (sqlite3.Error, OSError) as exc:
                raise RunFileError(f"cannot create the run file {self.path}: {exc}") from exc
            # SQLite side files of an earlier file of this name, deleted without them, would be
            # taken for the new file's (an old WAL replayed into it): the name is free, so they
            # belong to no live file. (Removed before the link: after it, a reader of the new
            # file may already have made its own.)
            for side in ("-wal", "-shm", "-journal"):
                if not os.path.lexists(target):
                    try:
                        os.unlink(self.path + side)
                    except OSError:
                        pass
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise RunFileError(_refusal(self.path)) from None
            except OSError:
                # no hard links here (some network or FUSE file systems): claim the name
                # exclusively and fill it; a reader may see it empty for a moment
                try:
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                except FileExistsError:
                    raise RunFileError(_refusal(self.path)) from None
                except OSError as exc:
                    raise RunFileError(f"cannot create the run file {self.path}: {exc}") from exc
                with os.fdopen(fd, "wb") as out, open(tmp, "rb") as src:
                    out.write(src.read())
        finally:
            for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
                try:
                    p.unlink()
                except OSError:
                    pass

    # -- the caller's side (the training thread, the worker) -------------------------------------------

    def record(self, analysis: str, step: int, time: float, values: dict) -> None:
        """Queue one sampling event: ``values`` maps layer -> float or NumPy array. O(1)."""
        if analysis not in _ANALYSES:
            raise ValueError(f"unknown analysis {analysis!r}; choose one of {', '.join(map(repr, ANALYSES))}")
        if not self._stopped:
            self._queue.append((_SAMPLE, analysis, step, time, values))

    def add_note(self, kind: str, note: MonitorError) -> None:
        """Queue an error or notice (``kind`` "error" or "notice")."""
        if kind not in _NOTE_KINDS:
            raise ValueError(f"kind must be 'error' or 'notice', got {kind!r}")
        if not isinstance(note, MonitorError):
            raise TypeError(f"add_note expects a MonitorError, got {type(note).__name__}")
        if not self._stopped:
            self._queue.append((_NOTE, kind, note))

    def update_info(self, **items) -> None:
        """Queue updates of the run's info (JSON-able values; NumPy values are converted)."""
        reserved = sorted(set(items) & RESERVED_KEYS)
        if reserved:
            raise ValueError(f"info keys {reserved} are kept by the store itself")
        if items and not self._stopped:
            self._queue.append((_INFO, items))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is committed. False on timeout, or when the writer
        has stopped (closed, or after a write error)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._stopped or threading.current_thread() is self._thread:
                return False
            self._flush_requested += 1
            wanted = self._flush_requested
            self._cond.notify_all()
            while self._flushed < wanted and not self._stopped:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return self._flushed >= wanted

    def close(self, status: str = "finished", timeout: float | None = None) -> None:
        """Commit what is queued, write ``status`` ("finished" or "interrupted") and close the
        file. Idempotent; never raises a write error."""
        if status not in ("finished", "interrupted"):
            raise ValueError(f"status must be 'finished' or 'interrupted', got {status!r}")
        if os.getpid() != self._pid:
            return       # a forked child: the file is its parent's
        with self._cond:
            if self._closing is None:
                self._closing = status
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        with _open_writers_lock:
            _open_writers.discard(self)

    def discard(self, timeout: float | None = DISCARD_TIMEOUT) -> None:
        """Stop and remove the file (with its SQLite side files) instead of closing it: for a
        run that holds nothing anyone recorded (a monitor whose constructor failed), so that
        its path is free again at once. What is queued is dropped. Idempotent; never raises."""
        if os.getpid() != self._pid:
            return       # a forked child: the file is its parent's
        with self._cond:
            if self._closing is None:
                self._closing = _DISCARDED
            discarding = self._closing == _DISCARDED
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        with _open_writers_lock:
            _open_writers.discard(self)
        if discarding and not self._thread.is_alive():    # the connection is closed: unlink
            for side in ("", "-wal", "-shm", "-journal"):
                try:
                    os.unlink(self.path + side)
                except OSError:
                    pass

    @property
    def closed(self) -> bool:
        return self._closing is not None and not self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Items queued and not yet written."""
        return len(self._queue)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("finished" if exc_type is None else "interrupted")

    def __repr__(self) -> str:
        state = "failed" if self.error else "closed" if self._closing else "open"
        return f"<RunWriter {self.path} {state}>"

    # -- the writer thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        next_commit = time.monotonic() + self._commit_every
        while True:
            with self._cond:
                while (self._closing is None and self._flush_requested == self._flushed
                       and time.monotonic() < next_commit):
                    self._cond.wait(max(0.0, next_commit - time.monotonic()))
                closing, wanted = self._closing, self._flush_requested
            if closing == _DISCARDED:
                self._let_go()
                return
            items = []
            while self._queue:
                items.append(self._queue.popleft())
            token = self._begin()
            try:
                self._write(items, closing)
            except Exception as exc:   # noqa: BLE001 - any write fault stops the recording, quietly
                self._fail(exc)
                return
            finally:
                self._end(token)
            with self._cond:
                self._flushed = wanted
                if closing is not None:
                    self._stopped = True
                self._cond.notify_all()
            if closing is not None:
                self._finish()
                return
            next_commit = time.monotonic() + self._commit_every

    def _write(self, items: list, closing: str | None) -> None:
        now_mono = time.monotonic()
        heartbeat_due = closing is not None or now_mono - self._last_heartbeat >= self._heartbeat_every
        if not items and not heartbeat_due:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            full: list[tuple[int, _Chunk]] = []      # rows to write for the last time
            notes: list[tuple] = []
            meta: dict = {}
            for item in items:
                if item[0] == _SAMPLE:
                    self._add_sample(db, item[1:], full, notes)
                elif item[0] == _NOTE:
                    _, kind, n = item
                    notes.append((kind, _int_or_none(n.step), n.analysis, n.layer, str(n.message),
                                  str(n.traceback or "")))
                else:
                    meta.update(item[1])
            for layout, chunk in full:
                chunk.write(db, layout)
            for layout, chunk in self._open_rows.items():
                if chunk.dirty:
                    chunk.write(db, layout)
            if notes:
                db.executemany("INSERT INTO notes(kind, step, analysis, layer, message, traceback) "
                               "VALUES (?, ?, ?, ?, ?, ?)", notes)
            now = time.time()
            if items:
                meta["updated"] = now
                meta["last_step"] = self._last_step
            if heartbeat_due:
                meta["heartbeat"] = now
                self._last_heartbeat = now_mono
            if closing is not None:
                meta["status"] = closing
            _put_meta(db, meta)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _add_sample(self, db, item, full, notes) -> None:
        analysis, step, when, values = item
        try:
            step, when = int(step), float(when)
            shapes = self._shapes.setdefault(analysis, {})
            groups: dict[tuple, list] = {}
            for layer, value in values.items():
                array = _as_stored(layer, value)
                known = shapes.get(layer)
                if known is not None and known != array.shape:
                    raise ValueError(f"value of layer {layer!r} has shape {array.shape}, "
                                     f"earlier ones {known}")
                groups.setdefault((array.dtype.str, array.shape), []).append((layer, array))
            stacked = []
            for (dtype, shape), members in groups.items():
                data = np.stack([a for _, a in members]) if shape else \
                    np.array([a for _, a in members], dtype=dtype)
                if data.nbytes > MAX_VALUE_BYTES:
                    raise ValueError(f"{data.nbytes / 2**20:.0f} MB in one record of layers "
                                     f"{[n for n, _ in members][:3]}...: over the store's "
                                     f"{MAX_VALUE_BYTES >> 20} MB")
                stacked.append((tuple(n for n, _ in members), dtype, shape, data))
        except Exception as exc:     # noqa: BLE001 - a record the store cannot take: noted, left out
            notes.append(("error", _int_or_none(step), analysis, None,
                          f"not stored: {type(exc).__name__}: {exc}", ""))
            return
        if not values:
            stacked = [((), "<f4", (), np.empty(0, "<f4"))]     # an event without values
        ranks = self._ranks.setdefault(analysis, {})
        for layer, value in values.items():
            shapes.setdefault(layer, np.shape(value))
            ranks.setdefault(layer, len(ranks))
        event = self._events.get(analysis, 0)
        self._events[analysis] = event + 1
        self._last_step = step if self._last_step is None else max(self._last_step, step)
        for layers, dtype, shape, data in stacked:
            key = (analysis, layers, dtype, shape)
            layout = self._layouts.get(key)
            if layout is None:
                cursor = db.execute(
                    "INSERT INTO layouts(analysis, layers, ranks, dtype, shape) VALUES (?, ?, ?, ?, ?)",
                    (analysis, json.dumps(list(layers)), json.dumps([ranks[n] for n in layers]),
                     dtype, json.dumps(list(shape))))
                layout = self._layouts[key] = cursor.lastrowid
            chunk = self._open_rows.get(layout)
            if chunk is not None and chunk.events and len(chunk.data) + data.nbytes > ROW_BYTES:
                full.append((layout, chunk))
                chunk = None
            if chunk is None:
                chunk = self._open_rows[layout] = _Chunk()
            chunk.add(event, step, when, data)
            if len(chunk.data) >= ROW_BYTES:
                full.append((layout, self._open_rows.pop(layout)))

    def _finish(self) -> None:
        """After the final commit: fold the WAL into the file and, when no reader has it open,
        leave a single self-contained file. Failures here cost nothing: the data is committed."""
        db = self._db
        try:
            db.execute("PRAGMA incremental_vacuum").fetchall()   # the replaced rows' pages
            db.execute("PRAGMA busy_timeout = 0")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("PRAGMA journal_mode = DELETE")
        except sqlite3.Error:
            pass
        finally:
            try:
                db.close()
            except sqlite3.Error:
                pass

    def _let_go(self) -> None:
        """Discarded: drop what is queued and close the connection, writing nothing."""
        self._queue.clear()
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self._stopped = True      # records are dropped from now on; flush() wakes at the end
        self._queue.clear()
        db = self._db
        try:     # best effort: say so in the file (an update in place may fit a full disk)
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.execute("BEGIN IMMEDIATE")
            _put_meta(db, {"status": "interrupted",
                           "write_error": f"{type(exc).__name__}: {exc}"})
            db.execute("COMMIT")
        except Exception:   # noqa: BLE001
            pass
        try:
            db.close()
        except Exception:   # noqa: BLE001
            pass
        with _open_writers_lock:
            _open_writers.discard(self)
        message = f"nnmodes_widgets stopped recording the run to {self.path}: {type(exc).__name__}: {exc}"
        try:
            if self._on_error is not None:
                self._on_error(exc)
            else:
                warnings.warn(message, RuntimeWarning, stacklevel=1)
        except Exception:   # noqa: BLE001 - the callback's own fault goes nowhere else
            _traceback.print_exc()
        with self._cond:
            self._cond.notify_all()


def _put_meta(db, items: dict) -> None:
    for key, value in items.items():
        # delete, then insert: the item gets a new, larger id (AUTOINCREMENT) that a tailing
        # reader finds above the last one it saw
        db.execute("DELETE FROM meta WHERE key = ?", (key,))
        db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (key, _dumps(value)))


def _int_or_none(value):
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _refusal(path: str) -> str:
    """Why a writer will not take ``path`` (which exists)."""
    try:
        meta = peek(path)
    except RunFileError:
        return (f"{path} exists and is not a run file: refusing to overwrite it; "
                "choose another path")
    status = run_status(meta, time.time(), STALE_AFTER)
    if status == "running":
        age = time.time() - meta["heartbeat"] if isinstance(meta.get("heartbeat"), (int, float)) else math.nan
        return (f"{path} is being written by another live writer (pid {meta.get('pid')} on "
                f"{meta.get('host')}, heartbeat {age:.0f} s ago): two monitors cannot record to "
                "one file; choose another path (run=...)")
    started = meta.get("started")
    when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
            if isinstance(started, (int, float)) else "?")
    article = "an" if status[0] in "aeiou" else "a"
    return (f"{path} already holds {article} {status} run (started {when}): refusing to overwrite it; "
            "choose another path or delete that file")


def exit_status() -> str:
    """How a run still open at interpreter exit ends: "interrupted" when a script ends with an
    uncaught exception (not in IPython, where a cell's old exception stays in sys.last_value),
    else "finished"."""
    crashed = getattr(sys, "last_value", None) is not None and "IPython" not in sys.modules
    return "interrupted" if crashed else "finished"


@atexit.register
def _close_open_writers() -> None:
    """At interpreter exit, close what is still open (``exit_status``)."""
    status = exit_status()
    with _open_writers_lock:
        writers = list(_open_writers)
    for writer in writers:
        try:
            writer.close(status, timeout=30)
        except Exception:   # noqa: BLE001
            pass

