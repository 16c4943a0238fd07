"""Reading runs from their files (SPEC 11, 14): ``open_run``, ``Run`` (and ``list_runs``, from
``run_listing``).

Any number of processes read a run, also while it is being written (a script or a ``torchrun``
job writes, a notebook tails it); nothing is ever written through them (file format and
liveness: ``run_file``). A malformed file, whatever it holds, is a ``RunFileError``, and reading
it allocates memory bounded by its size (``Run._read_samples``). Needs the standard library and
NumPy only: ``Run.dashboard`` and ``Run.to_tensorboard`` import what they need when called.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import traceback as _traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .findings import Finding, detect
from .history import ANALYSES, History
from .run_file import (DTYPES, STALE_AFTER, SUFFIX, bound_lengths, brief, file_bytes, finite,
                       open_checked, read_meta, refused, run_status)
from .run_listing import list_runs
from .run_state import MAX_KEPT, MonitorError
from .run_view import ProbeFacts

__all__ = ["Run", "open_run", "list_runs", "compare"]

_ANALYSES = frozenset(ANALYSES)
_MAX_DIMS = 16                  # dimensions of one layer's value in a layout
_MAX_INT = 2 ** 62              # steps and record numbers stay well inside int64
# the byte lengths of a sample row's blobs (``_blob_length``), read without reading the blobs
_BLOB_LENGTHS = ", ".join(f"CASE typeof({c}) WHEN 'null' THEN -1 WHEN 'blob' THEN length({c}) ELSE -2 END"
                          for c in ("events", "steps", "times", "data"))
_FAULTS = (sqlite3.Error, ValueError, KeyError, TypeError, IndexError, OverflowError,
           RecursionError)      # what a malformed file can make reading raise


def _json(text, what: str):
    """The JSON value of a layout's column ``what``; ValueError if it is not JSON."""
    if not isinstance(text, str):
        raise ValueError(f"{what} is not text: {brief(text)}")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from None


def _blob_length(value) -> int:
    """The byte length of a blob column's value: -1 for NULL, -2 for a value that is no blob."""
    return -1 if value is None else len(value) if isinstance(value, bytes) else -2


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Layout:
    __slots__ = ("analysis", "layers", "ranks", "dtype", "shape", "size", "nbytes")

    def __init__(self, analysis, layers, ranks, dtype, shape):
        if not isinstance(layers, list) or not all(isinstance(n, str) for n in layers) \
                or not isinstance(ranks, list) or len(ranks) != len(layers) \
                or not all(_int(r) for r in ranks) \
                or not isinstance(dtype, str) or dtype not in DTYPES or not isinstance(shape, list) \
                or len(shape) > _MAX_DIMS or not all(_int(d) and 0 <= d < 2 ** 31 for d in shape):
            raise ValueError(f"malformed layout {analysis!r} {brief(layers)} {brief(dtype)} "
                             f"{brief(shape)}")
        self.analysis, self.layers, self.ranks = analysis, layers, ranks
        self.dtype, self.shape = np.dtype(dtype), tuple(shape)
        self.size = len(layers) * math.prod(shape)            # values in one record
        self.nbytes = self.size * self.dtype.itemsize
        if self.nbytes >= _MAX_INT:
            raise ValueError(f"malformed layout {analysis!r}: {self.nbytes} bytes a record")


def _row_problem(layout: _Layout, count, first, step, stride, events: int, steps: int,
                 times: int, data: int) -> str | None:
    """What makes a sample row of ``layout`` not match it; None when it matches. ``events``,
    ``steps``, ``times``, ``data``: the byte lengths of those columns (``_blob_length``). The
    count is checked against the bytes present before anything is sized by it."""
    if not all(_int(v) for v in (count, first, step, stride)):
        return "count, event, step and stride must be integers"
    if count < 0 or times != 8 * count:
        return f"{count} records but {max(times, 0)} bytes of times"
    if events not in (-1, 8 * count) or steps not in (-1, 8 * count):
        return f"{count} records but {max(events, 0)} bytes of record numbers, {max(steps, 0)} of steps"
    if data != count * layout.nbytes:
        return f"{count} records of {layout.nbytes} bytes but {max(data, 0)} bytes of values"
    if not 0 <= first < _MAX_INT - count or abs(step) + abs(stride) * count >= _MAX_INT:
        return "record numbers or steps out of range"
    return None


_FLUSH_BYTES = 16 << 20     # values of one analysis gathered before they go to the history


class _Piece:
    """Records of one layout read from one sample row: their numbers, steps, times [count] and
    values [count, L, *shape] (views of the row's bytes)."""

    __slots__ = ("layout", "numbers", "steps", "times", "values")

    def __init__(self, layout, numbers, steps, times, values):
        self.layout, self.numbers, self.steps, self.times, self.values = \
            layout, numbers, steps, times, values

    def take(self, mask: np.ndarray) -> _Piece:
        return _Piece(self.layout, self.numbers[mask], self.steps[mask], self.times[mask],
                      self.values[mask])


class _Pending:
    """The records of one analysis read in this pass and not yet handed to the history."""

    __slots__ = ("pieces", "nbytes", "low")

    def __init__(self):
        self.pieces: list[_Piece] = []
        self.nbytes = 0
        self.low = math.inf             # the smallest record number among them

    def add(self, piece: _Piece) -> None:
        self.pieces.append(piece)
        self.nbytes += piece.values.nbytes
        self.low = min(self.low, int(piece.numbers.min()))

    def split(self, limit: float) -> list[_Piece]:
        """Take out the records numbered below ``limit``."""
        ready, rest = [], []
        for piece in self.pieces:
            below = piece.numbers < limit
            if below.all():
                ready.append(piece)
            elif below.any():
                ready.append(piece.take(below))
                rest.append(piece.take(~below))
            else:
                rest.append(piece)
        self.pieces, self.nbytes, self.low = [], 0, math.inf
        for piece in rest:
            self.add(piece)
        return ready


class Run:
    """A run read from its file (``open_run``): the run view (``nnmodes_widgets.run_view``) that
    panels and exports draw from, like a live Monitor.

    ``history`` holds every recorded value (float32-rounded floats; ``max_bytes=None``); ``info``
    the run's facts (``info["status"]``: "running", "finished" or "interrupted", judged now);
    ``every``, ``rwc_kind``, ``budget`` the monitor's settings (from ``info["settings"]`` or
    ``info``; the Monitor's defaults where absent). ``poll()`` reads what the writer added since;
    ``subscribe`` starts a thread that polls every ``poll_interval`` s while the run is running.
    Nothing is ever written to the file.
    """

    poll_interval = 1.0

    def __init__(self, path, *, stale_after: float = STALE_AFTER):
        if isinstance(stale_after, bool) or not isinstance(stale_after, (int, float)) or not stale_after > 0:
            raise ValueError(f"stale_after must be a positive number of seconds, got {stale_after!r}")
        opened = open_checked(path)
        self.path, self._real, self._db = opened.path, opened.real, opened.db
        self._wal_unread = opened.wal_unread
        self.name = Path(self.path).name.removesuffix(SUFFIX)
        self.stale_after = float(stale_after)
        self.history = History(max_bytes=None)
        self._lock = threading.RLock()            # one poll at a time
        self._listeners: list[Callable] = []
        self._listeners_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._meta: dict = {}
        self._meta_id = self._sample_id = self._note_id = self._layout_id = 0
        self._layouts: dict[int, _Layout | None] = {}
        self._notes = {"error": deque(maxlen=MAX_KEPT), "notice": deque(maxlen=MAX_KEPT)}
        self._error_count = 0
        self._info_changes = 0
        self._local_errors: deque[MonitorError] = deque(maxlen=MAX_KEPT)   # the viewers' own faults
        self._skipped: set[str] = set()
        self._done: dict[str, int] = {}        # analysis -> the newest record number read
        self._nonfinite: dict[str, int] = {}
        self._findings: tuple[int, list] | None = None    # (history version, its findings)
        self._last_step: int | None = None
        self._heartbeat_seen: float | None = None
        self._status = "interrupted"
        self.every, self.rwc_kind, self.budget = 10, "l1", 0.05
        try:
            self._read(strict=True)
        except _FAULTS as exc:
            self._db.close()
            raise refused(self.path, f"corrupt: {type(exc).__name__}: {exc}") from exc
        if self._status == "finished":
            self._close_db()       # nothing more will come; later opens see the finished file

    # -- reading the file -------------------------------------------------------------------------------

    def poll(self) -> bool:
        """Read what the writer added since the last poll; whether anything new arrived or the
        status changed. Cost: the rows above the last ones seen."""
        with self._lock:
            if self._db is None:
                return False
            before = (self._status, self.history.version, self._error_count,
                      len(self._notes["notice"]), self._info_changes)
            try:
                self._read()
            except _FAULTS as exc:
                self.report("store", exc)
                return True
            if self._status == "finished":
                self._close_db()
            return before != (self._status, self.history.version, self._error_count,
                              len(self._notes["notice"]), self._info_changes)

    def _read(self, strict: bool = False) -> None:
        """Read the rows above the last ones seen. A malformed row raises when ``strict`` (when
        the file is opened), else is reported and skipped."""
        db = self._db
        bound_lengths(db, self._real)
        db.execute("BEGIN")        # one snapshot: a commit's rows all, or none of them
        try:
            meta, self._meta_id = read_meta(db, self._meta_id)
            for rowid, analysis, layers, ranks, dtype, shape in db.execute(
                    "SELECT id, analysis, layers, ranks, dtype, shape FROM layouts WHERE id > ? "
                    "ORDER BY id", (self._layout_id,)):
                self._layouts[rowid] = self._layout(analysis, layers, ranks, dtype, shape, strict)
                self._layout_id = rowid
            self._read_samples(db, strict)
            notes = db.execute("SELECT id, kind, step, analysis, layer, message, traceback FROM notes "
                               "WHERE id > ? ORDER BY id", (self._note_id,)).fetchall()
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")     # (read only: nothing to commit)
        if "heartbeat" in meta and "heartbeat" in self._meta and meta["heartbeat"] != self._meta["heartbeat"]:
            self._heartbeat_seen = time.monotonic()
        if set(meta) - {"heartbeat"}:
            self._info_changes += 1       # news for the listeners (a heartbeat alone is not)
        self._meta.update(meta)
        settings = self._meta.get("settings") if isinstance(self._meta.get("settings"), dict) else {}
        for name, kind in (("every", int), ("rwc_kind", str), ("budget", float)):
            value = settings.get(name, self._meta.get(name))
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                try:
                    value = kind(value)
                except (TypeError, ValueError, OverflowError):
                    continue
                if kind is str or (finite(value) is not None and value > 0):
                    setattr(self, name, value)
        for rowid, kind, step, analysis, layer, message, tb in notes:
            note = MonitorError(step if _int(step) else 0, analysis if isinstance(analysis, str) else "",
                                layer if isinstance(layer, str) else None, str(message),
                                tb if isinstance(tb, str) else "")
            if kind == "error":
                self._error_count += 1
            self._notes["error" if kind == "error" else "notice"].append(note)
            self._note_id = rowid
        self._status = run_status(self._meta, time.time(), self.stale_after, self._heartbeat_seen)

    def _layout(self, analysis, layers, ranks, dtype, shape, strict: bool) -> _Layout | None:
        """The layout of a row of ``layouts``; None for an analysis of a newer version (skipped)
        or, unless ``strict``, a malformed layout (reported)."""
        if isinstance(analysis, str) and analysis not in _ANALYSES:
            self._skipped.add(analysis if len(analysis) <= 80 else analysis[:77] + "...")
            return None
        try:
            if not isinstance(analysis, str):
                raise ValueError(f"malformed layout: analysis {brief(analysis)}")
            return _Layout(analysis, _json(layers, "a layout's layers"), _json(ranks, "a layout's ranks"),
                           dtype, _json(shape, "a layout's shape"))
        except ValueError as exc:
            if strict:
                raise
            self.report("store", exc)
            return None

    def _read_samples(self, db, strict: bool) -> None:
        """Read the sample rows above the last one seen into the history, in blocks (``extend``).

        A record spanning several layouts (layers of different shapes) has a row of each, all in
        one commit but not next to each other; rows hold their records in increasing order. So a
        first pass reads each new row's head (its layout, counts, first record number and the
        lengths of its blobs, not its values): after a row, the records of its analysis below the
        first record of every later row of that analysis are complete, and go to the history once
        enough of them are gathered. Memory: the history plus about ``_FLUSH_BYTES`` of read
        values per analysis (more only while a row read later holds early records of some
        layout).

        A row's counts are checked against the bytes of its blobs before anything is sized by
        them, and one pass takes no more values (records x layers) than the file has bytes (each
        value stored takes at least one; only empty arrays take none): whatever a file's fields
        claim, what reading it allocates is bounded by its size."""
        heads = db.execute(f"SELECT id, layout, count, event, step, stride, {_BLOB_LENGTHS} FROM samples "
                           "WHERE id > ? ORDER BY id", (self._sample_id,)).fetchall()
        if not heads:
            return
        problems = self._check_heads(heads, file_bytes(self._real))
        limits: dict[int, float] = {}      # row -> the smallest first record of later rows
        later: dict[str, float] = {}
        for rowid, layout_id, _, first, *_ in reversed(heads):
            layout = self._layouts.get(layout_id)
            if layout is None or rowid in problems:
                continue
            limits[rowid] = later.get(layout.analysis, math.inf)
            later[layout.analysis] = min(limits[rowid], first)
        self._make_room(heads, problems)
        pending: dict[str, _Pending] = {}
        for row in db.execute("SELECT id, layout, count, event, events, step, stride, steps, times, data "
                              "FROM samples WHERE id > ? AND id <= ? ORDER BY id",
                              (self._sample_id, heads[-1][0])):
            try:
                if row[0] in problems:
                    raise ValueError(f"sample row {row[0]}: {problems[row[0]]}")
                piece = self._unpack(row)
            except (ValueError, KeyError, TypeError) as exc:
                if strict:
                    raise
                self.report("store", exc)      # one bad row: said once, skipped
                continue
            if piece is None:
                continue
            analysis = piece.layout.analysis
            gathered = pending.setdefault(analysis, _Pending())
            gathered.add(piece)
            limit = limits.get(row[0], -math.inf)
            if gathered.nbytes >= _FLUSH_BYTES and gathered.low < limit:
                self._to_history(analysis, gathered.split(limit))
        for analysis, gathered in pending.items():
            self._to_history(analysis, gathered.split(math.inf))
        self._sample_id = heads[-1][0]

    def _check_heads(self, heads, budget: int) -> dict[int, str]:
        """What is wrong with each malformed row among ``heads`` (rows of ``_read_samples``'s
        first pass), by row id; the rows past ``budget`` values (records x layers) are too."""
        problems, values = {}, 0
        for rowid, layout_id, count, first, step, stride, *lengths in heads:
            if layout_id not in self._layouts:
                problems[rowid] = f"refers to layout {brief(layout_id)}, which does not exist"
                continue
            layout = self._layouts[layout_id]
            if layout is None:
                continue
            problem = _row_problem(layout, count, first, step, stride, *lengths)
            if problem is None:
                values += count * len(layout.layers)
                if values > budget:
                    problem = "more values than the file has bytes"
            if problem is not None:
                problems[rowid] = problem
        return problems

    def _make_room(self, heads, problems: dict[int, str]) -> None:
        """Let the history make room, at once, for the records of the well-formed rows ``heads``
        (``_read_samples``'s first pass) above those read: opening a file fills arrays of
        exactly the size needed (no growing on the way, nor its spare room)."""
        rooms: dict[str, list] = {}       # analysis -> [newest record number, records, {layer: values}]
        for rowid, layout_id, count, first, *_ in heads:
            layout = self._layouts.get(layout_id)
            if layout is None or rowid in problems:
                continue
            done = self._done.get(layout.analysis, -1)
            new = count - min(count, max(0, done + 1 - first))    # above done, if consecutive
            if new <= 0:
                continue
            room = rooms.setdefault(layout.analysis, [done, 0, {}])
            room[0] = max(room[0], first + count - 1)
            room[1] += new
            for layer in layout.layers:
                room[2][layer] = room[2].get(layer, 0) + new
        for analysis, (newest, records, layers) in rooms.items():
            # (records are numbered without gaps; a file that skips numbers gets no more room
            # than its rows hold)
            self.history._make_room(analysis, min(newest - self._done.get(analysis, -1), records),
                                    layers)

    def _unpack(self, row) -> _Piece | None:
        """The records of one sample row not read before (None: none, or an analysis skipped)."""
        rowid, layout_id, count, first, listed, step, stride, steps, times, data = row
        if layout_id not in self._layouts:
            raise ValueError(f"sample row {rowid} refers to layout {brief(layout_id)}, which does not exist")
        layout = self._layouts[layout_id]
        if layout is None:
            return None
        problem = _row_problem(layout, count, first, step, stride,
                               *(_blob_length(v) for v in (listed, steps, times, data)))
        if problem is not None:
            raise ValueError(f"sample row {rowid}: {problem}")
        if not count:
            return None
        steps = (step + stride * np.arange(count, dtype=np.int64) if steps is None
                 else np.frombuffer(steps, dtype="<i8"))
        times = np.frombuffer(times, dtype="<f8")
        numbers = (np.arange(first, first + count, dtype=np.int64) if listed is None
                   else np.frombuffer(listed, dtype="<i8"))
        values = np.frombuffer(data, dtype=layout.dtype).reshape(count, len(layout.layers), *layout.shape)
        analysis = layout.analysis
        if analysis == "rwc" and layout.dtype.kind == "f" and layout.size:
            bad = ~np.isfinite(values.reshape(count, len(layout.layers), -1)).all(axis=2)
            for i, j in zip(*np.nonzero(bad)):
                self._nonfinite.setdefault(layout.layers[j], int(steps[i]))
        newest = int(steps.max())
        self._last_step = newest if self._last_step is None else max(self._last_step, newest)
        piece = _Piece(layout, numbers, steps, times, values)
        new = numbers > self._done.get(analysis, -1)     # (others: read before, from this row's
        if new.all():                                    # earlier version)
            return piece
        return piece.take(new) if new.any() else None

    def _to_history(self, analysis: str, pieces: list[_Piece]) -> None:
        """Hand complete records to the history, one event per record, in record order: the
        records that hold the same layouts in one ``extend`` call."""
        if not pieces:
            return
        numbers = np.concatenate([p.numbers for p in pieces])
        records, first = np.unique(numbers, return_index=True)
        steps = np.concatenate([p.steps for p in pieces])[first]
        times = np.concatenate([p.times for p in pieces])[first]
        by_layout: dict[_Layout, list[_Piece]] = {}
        for piece in pieces:
            by_layout.setdefault(piece.layout, []).append(piece)
        groups = []         # (layout, positions in records (increasing), values at them)
        for layout, parts in by_layout.items():
            nums = np.concatenate([p.numbers for p in parts]) if len(parts) > 1 else parts[0].numbers
            vals = np.concatenate([p.values for p in parts]) if len(parts) > 1 else parts[0].values
            where = np.searchsorted(records, nums)
            if len(where) > 1 and not (np.diff(where) > 0).all():
                # out of order, or a record twice (not from this module's writer): the last read
                last = len(where) - 1 - np.unique(where[::-1], return_index=True)[1]
                where, vals = where[last], vals[last]
            groups.append((layout, where, vals))
        member = np.zeros((len(groups), len(records)), dtype=bool)
        for k, (_, where, _) in enumerate(groups):
            member[k, where] = True
        # runs of consecutive records that hold the same layouts
        cuts = np.flatnonzero((member[:, 1:] != member[:, :-1]).any(axis=0)) + 1
        bounds = [0, *cuts.tolist(), len(records)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            columns = []
            for k in np.flatnonzero(member[:, a]):
                layout, where, vals = groups[k]
                i = int(np.searchsorted(where, a))
                block = vals[i: i + b - a]
                columns += [(rank, layer, block[:, j])
                            for j, (rank, layer) in enumerate(zip(layout.ranks, layout.layers))]
            columns.sort(key=lambda c: c[0])       # layers in their order of first appearance
            values = {layer: v for _, layer, v in columns}
            try:
                self.history.extend(analysis, steps[a:b], times[a:b], values)
            except ValueError:
                # a layer whose shape changed (not from this module's writer): record by
                # record, each refused one reported
                for i in range(a, b):
                    try:
                        self.history.record(analysis, int(steps[i]), float(times[i]),
                                            {layer: v[i - a] for layer, v in values.items()})
                    except ValueError as exc:
                        self.report(analysis, exc, step=int(steps[i]))
        self._done[analysis] = int(records[-1])

    def _close_db(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    # -- the run view -----------------------------------------------------------------------------------

    @property
    def info(self) -> dict:
        """The run's facts as recorded, ``status`` as judged now."""
        with self._lock:
            info = dict(self._meta)
            info["status"] = self._status
            return info

    @property
    def status(self) -> str:
        return self._status

    @property
    def detached(self) -> bool:
        """No more data will come: the run is not running."""
        return self._status != "running"

    @property
    def layers(self) -> list[str]:
        """Module names of the analysed weights (``info["layers"]``; else from the RWC keys)."""
        layers = self._meta.get("layers")
        if isinstance(layers, list) and all(isinstance(n, str) for n in layers):
            return list(layers)
        names = (name.rpartition(".")[0] or name for name in self.history.layers("rwc"))
        return list(dict.fromkeys(names))

    @property
    def probe_facts(self) -> ProbeFacts | None:
        facts = self._meta.get("probe_facts")
        if not isinstance(facts, dict):
            return None
        try:
            return ProbeFacts(labelled=bool(facts["labelled"]),
                              input_shape=tuple(int(d) for d in facts["input_shape"]),
                              floating=bool(facts["floating"]))
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def errors(self) -> list[MonitorError]:
        """The run's recorded errors, then the viewers' own faults (``report``)."""
        with self._lock:
            return list(self._notes["error"]) + list(self._local_errors)

    @property
    def notices(self) -> list[MonitorError]:
        with self._lock:
            notices = list(self._notes["notice"])
        if self._skipped:
            notices.append(MonitorError(0, "store", None, "analyses from a newer nnmodes_widgets not "
                                        f"shown: {', '.join(sorted(self._skipped))}"))
        if self._wal_unread:
            notices.append(MonitorError(0, "store", None, "the records committed since the file's "
                                        "last checkpoint are not shown: its -wal has no -shm beside "
                                        "it, and reading it would create one"))
        return notices

    @property
    def findings(self) -> list[Finding]:
        """What the analyses saw, in words (SPEC 15): the detectors over the recorded history
        and settings, so a stored run has the live monitor's findings (up to the float32
        rounding of its values); recomputed only when new records came in."""
        version = self.history.version
        if self._findings is None or self._findings[0] != version:
            self._findings = (version, detect(self.history, self.info.get("settings")))
        return list(self._findings[1])

    @property
    def current_step(self) -> int:
        return self._last_step or 0

    def stats(self) -> dict:
        """The keys of ``Monitor.stats()``: NaN, None or 0 where a stored run has no measure
        (the measured slowdown and shares, unless the writer kept ``info["stats"]``);
        ``steps_per_second`` from the recorded RWC steps and times; ``step`` the newest step
        recorded."""
        steps = self.history.steps("rwc")
        rate = math.nan
        if len(steps) >= 2:
            layers = self.history.layers("rwc")
            times = self.history.times("rwc", layers[0]) if layers else np.empty(0)
            if len(times) == len(steps):
                s, t = steps[-20:], times[-20:]
                if t[-1] > t[0]:
                    rate = float((s[-1] - s[0]) / (t[-1] - t[0]))
        errors = self.errors
        nonfinite = dict(self._nonfinite)
        recorded_nonfinite = self._meta.get("nonfinite")
        if isinstance(recorded_nonfinite, dict):
            nonfinite.update(recorded_nonfinite)
        out = {
            "step": self.current_step,
            "steps_per_second": rate,
            "slowdown": math.nan,
            "overhead": math.nan,
            "own_share": math.nan,
            "worker_share": math.nan,
            "widget_share": math.nan,
            "contention": math.nan,
            "widget_contention": math.nan,
            "every_within_budget": None,
            "overhead_seconds": math.nan,
            "samples": self.history.count("rwc"),
            "dropped": 0,
            "deferred": 0,
            "worker_seconds": math.nan,
            "errors": self._error_count + len(self._local_errors),
            "last_error": str(errors[-1]) if errors else None,
            "nonfinite": sorted(nonfinite),
            "detached": self.detached,
        }
        kept = self._meta.get("stats")
        if isinstance(kept, dict):
            for key in ("slowdown", "overhead", "own_share", "worker_share", "widget_share",
                        "contention", "widget_contention", "overhead_seconds", "dropped", "deferred", "worker_seconds"):
                value = kept.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[key] = value
        out["status"] = self._status
        return out

    def summary(self) -> str:
        s = self.stats()
        parts = [f"run {self.name} ({s['status']})", f"step {s['step']}",
                 f"{s['samples']} sample{'' if s['samples'] == 1 else 's'} every "
                 f"{'step' if self.every == 1 else f'{self.every} steps'}"]
        if s["status"] == "running" and math.isfinite(s["steps_per_second"]):
            parts.insert(2, f"{s['steps_per_second']:.1f} steps/s")
        parts.append(f"{s['errors']} error{'' if s['errors'] == 1 else 's'}"
                     + (f" (last: {s['last_error']})" if s["last_error"] else ""))
        if s["nonfinite"]:
            parts.append("non-finite weights in " + ", ".join(s["nonfinite"]))
        return " · ".join(parts)

    def report(self, analysis: str, exc: BaseException, layer: str | None = None, *,
               step: int | None = None) -> None:
        """Keep a viewer's fault (a panel's) with the errors; never written to the file."""
        with self._lock:
            self._local_errors.append(MonitorError(
                self.current_step if step is None else step, analysis, layer,
                f"{type(exc).__name__}: {exc}", "".join(_traceback.format_exception(exc))))

    def begin_work(self, kind: str) -> object:
        return None

    def end_work(self, token: object) -> None:
        pass

    def work_cost(self, seconds: float, kind: str) -> float:
        return seconds             # nothing trains here

    def has_room(self) -> bool:
        return True

    def subscribe(self, listener: Callable[[Run], None]) -> None:
        """Call ``listener(run)`` (on a polling thread) when new data arrives or the status
        changes. The first subscriber of a running run starts the thread; it stops when the last
        one leaves or the run stops running."""
        with self._listeners_lock:
            self._listeners.append(listener)
            if self._poller is None and not self.detached and self._db is not None:
                self._stop.clear()
                self._poller = threading.Thread(target=self._poll_loop, daemon=True,
                                                name=f"nnmodes-run-poll:{self.name}")
                self._poller.start()

    def unsubscribe(self, listener: Callable[[Run], None]) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _poll_loop(self) -> None:
        me = threading.current_thread()
        while not self._stop.wait(self.poll_interval):
            with self._listeners_lock:
                if not self._listeners:
                    break
            news = self.poll()
            if news:
                with self._listeners_lock:
                    listeners = list(self._listeners)
                for listener in listeners:
                    try:
                        listener(self)
                    except Exception as exc:   # noqa: BLE001 - a listener's fault is the viewer's
                        self.report("listener", exc)
            if self.detached:
                break
        with self._listeners_lock:
            if self._poller is me:
                self._poller = None

    def dashboard(self):
        """The dashboard of this run (``nnmodes_widgets.Dashboard``); it keeps updating while the
        run is being written."""
        from ..widgets.dashboard import Dashboard

        return Dashboard(self)

    def to_tensorboard(self, logdir) -> str:
        """Write the run's RWC, ranks and neuron mode shares to ``logdir`` as TensorBoard scalars
        (a new event file beside any already there); returns ``logdir``, absolute.

        Tags: ``rwc/<layer>``, ``stable_rank/<layer>``, ``effective_rank/<layer>`` and
        ``neuron_modes/<layer>/<mode>`` for each mode of ``analysis.neurons.MODES`` (the share of
        the layer's neurons in it, by ``mode_code`` with eps 0.05 from the recorded active
        fractions, as the neurons panel draws them); the step is the training step, the wall
        time the recorded time. Needs TensorBoard's writer: ``torch.utils.tensorboard`` (package
        ``tensorboard``), else ``tensorboardX``."""
        summary_writer = _summary_writer()
        logdir = os.fspath(Path(logdir).expanduser().absolute())
        scalars = []       # (tag, steps, times, values)
        with self._lock:   # not halfway through a poll
            history = self.history
            for analysis in ("rwc", "stable_rank", "effective_rank"):
                for layer in history.layers(analysis):
                    steps, values = history.get(analysis, layer)
                    scalars.append((f"{analysis}/{layer}", steps, history.times(analysis, layer), values))
            layers = history.layers("neuron_modes")
            if layers:
                from ..analysis.neurons import MODES, mode_code   # (imports torch)

                for layer in layers:
                    steps, active = history.get("neuron_modes", layer)
                    if not active.size:
                        continue
                    code = mode_code(np.asarray(active, np.float64).reshape(len(steps), -1), 0.05)
                    times = history.times("neuron_modes", layer)
                    for index, mode in enumerate(MODES):
                        scalars.append((f"neuron_modes/{layer}/{mode}", steps, times,
                                        (code == index).mean(axis=1)))
        writer = summary_writer(log_dir=logdir)
        try:
            for tag, steps, times, values in scalars:
                for step, when, value in zip(steps.tolist(), times.tolist(), values.tolist()):
                    writer.add_scalar(tag, value, step, walltime=when)
        finally:
            writer.close()
        return logdir

    def close(self) -> None:
        """Stop polling and close the file."""
        self._stop.set()
        poller = self._poller
        if poller is not None and poller is not threading.current_thread():
            poller.join(5)
        with self._lock:
            self._close_db()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Run {self.name} {self._status}, step {self.current_step}, {self.path}>"


def open_run(path, *, stale_after: float = STALE_AFTER) -> Run:
    """The run recorded in ``path``, read-only (``Run``). ``stale_after``: seconds after which a
    silent writer (no heartbeat) of another host, or of a process no longer alive, makes the run
    "interrupted". RunFileError for a path that is missing, not a run file, written by a newer
    version, or corrupt."""
    return Run(path, stale_after=stale_after)


def compare(*runs, max_points: int = 500, max_rate: float = 4.0):
    """Runs side by side (``nnmodes_widgets.widgets.compare.Comparison``): each a run view (a
    ``Monitor``, a ``Run``) or the path of a run file, opened read-only."""
    from ..widgets.compare import Comparison

    opened = [open_run(run) if isinstance(run, (str, os.PathLike)) else run for run in runs]
    return Comparison(opened, max_points=max_points, max_rate=max_rate)


def _summary_writer():
    """TensorBoard's ``SummaryWriter``: PyTorch's, else tensorboardX's."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError("Run.to_tensorboard needs TensorBoard's writer: pip install "
                              "tensorboard (with torch), or pip install tensorboardX") from None
    return SummaryWriter
