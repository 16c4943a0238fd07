"""Reading runs from their files (SPEC 11): ``open_run``, ``Run``, ``list_runs``.

Any number of processes read a run, also while it is being written (a script or a ``torchrun``
job writes, a notebook tails it); nothing is ever written through them (file format and
liveness: ``run_file``). Needs the standard library and NumPy only: ``Run.dashboard`` and
``Run.to_tensorboard`` import what they need when called.
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

from .history import ANALYSES, History
from .run_file import (APPLICATION_ID, DTYPES, SQLITE_MAGIC, STALE_AFTER, SUFFIX, RunFileError,
                       open_checked, peek, read_meta, run_status)
from .run_state import MAX_KEPT, MonitorError
from .run_view import ProbeFacts

__all__ = ["Run", "open_run", "list_runs", "compare"]

_ANALYSES = frozenset(ANALYSES)


class _Layout:
    __slots__ = ("analysis", "layers", "ranks", "dtype", "shape", "size")

    def __init__(self, analysis, layers, ranks, dtype, shape):
        if not isinstance(layers, list) or not all(isinstance(n, str) for n in layers) \
                or not isinstance(ranks, list) or len(ranks) != len(layers) \
                or not all(isinstance(r, int) for r in ranks) \
                or dtype not in DTYPES or not isinstance(shape, list) \
                or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"malformed layout {analysis!r} {layers!r} {dtype!r} {shape!r}")
        self.analysis, self.layers, self.ranks = analysis, layers, ranks
        self.dtype, self.shape = np.dtype(dtype), tuple(shape)
        self.size = len(layers) * math.prod(shape)


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
        self.path, self._db = open_checked(path)
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
        self._last_step: int | None = None
        self._heartbeat_seen: float | None = None
        self._status = "interrupted"
        self.every, self.rwc_kind, self.budget = 10, "l1", 0.05
        try:
            self._read(strict=True)
        except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            self._db.close()
            raise RunFileError(f"{self.path} is a corrupt run file: {type(exc).__name__}: {exc}") from exc
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
            except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
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
        db.execute("BEGIN")        # one snapshot: a commit's rows all, or none of them
        try:
            meta, self._meta_id = read_meta(db, self._meta_id)
            for rowid, analysis, layers, ranks, dtype, shape in db.execute(
                    "SELECT id, analysis, layers, ranks, dtype, shape FROM layouts WHERE id > ? "
                    "ORDER BY id", (self._layout_id,)):
                if analysis not in _ANALYSES:      # written by a newer version
                    self._layouts[rowid] = None
                    self._skipped.add(analysis)
                else:
                    self._layouts[rowid] = _Layout(analysis, json.loads(layers), json.loads(ranks),
                                                   dtype, json.loads(shape))
                self._layout_id = rowid
            self._read_samples(db, strict)
            notes = db.execute("SELECT id, kind, step, analysis, layer, message, traceback FROM notes "
                               "WHERE id > ? ORDER BY id", (self._note_id,)).fetchall()
        finally:
            db.execute("COMMIT")
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
                    setattr(self, name, kind(value))
                except (TypeError, ValueError):
                    pass
        for rowid, kind, step, analysis, layer, message, tb in notes:
            note = MonitorError(step if step is not None else 0, analysis or "", layer, message, tb or "")
            if kind == "error":
                self._error_count += 1
            self._notes["error" if kind == "error" else "notice"].append(note)
            self._note_id = rowid
        self._status = run_status(self._meta, time.time(), self.stale_after, self._heartbeat_seen)

    def _read_samples(self, db, strict: bool) -> None:
        """Read the sample rows above the last one seen into the history, in blocks (``extend``).

        A record spanning several layouts (layers of different shapes) has a row of each, all in
        one commit but not next to each other; rows hold their records in increasing order. So a
        first pass reads each new row's layout and first record number (not its values): after
        a row, the records of its analysis below the first record of every later row of that
        analysis are complete, and go to the history once enough of them are gathered. Memory:
        the history plus about ``_FLUSH_BYTES`` of read values per analysis (more only while a
        row read later holds early records of some layout)."""
        heads = db.execute("SELECT id, layout, count, event, length(data) FROM samples WHERE id > ? "
                           "ORDER BY id", (self._sample_id,)).fetchall()
        if not heads:
            return
        limits: dict[int, float] = {}      # row -> the smallest first record of later rows
        later: dict[str, float] = {}
        for rowid, layout_id, _, first, _ in reversed(heads):
            layout = self._layouts.get(layout_id)
            if layout is None:
                continue
            limits[rowid] = later.get(layout.analysis, math.inf)
            if isinstance(first, int):
                later[layout.analysis] = min(limits[rowid], first)
        self._make_room(heads)
        pending: dict[str, _Pending] = {}
        for row in db.execute("SELECT id, layout, count, event, events, step, stride, steps, times, data "
                              "FROM samples WHERE id > ? AND id <= ? ORDER BY id",
                              (self._sample_id, heads[-1][0])):
            try:
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

    def _make_room(self, heads) -> None:
        """Let the history make room, at once, for the records of the rows ``heads`` (id, layout,
        count, first record, data bytes) above those read: opening a file fills arrays of
        exactly the size needed (no growing on the way, nor its spare room)."""
        rooms: dict[str, list] = {}       # analysis -> [newest record number, {layer: values}]
        for _, layout_id, count, first, size in heads:
            layout = self._layouts.get(layout_id)
            if layout is None or not all(isinstance(v, int) for v in (count, first, size)) \
                    or size != count * layout.size * layout.dtype.itemsize:
                continue      # (a malformed row: its count is not to be trusted)
            done = self._done.get(layout.analysis, -1)
            new = count - min(count, max(0, done + 1 - first))    # above done, if consecutive
            if new <= 0:
                continue
            room = rooms.setdefault(layout.analysis, [done, {}])
            room[0] = max(room[0], first + count - 1)
            for layer in layout.layers:
                room[1][layer] = room[1].get(layer, 0) + new
        for analysis, (newest, layers) in rooms.items():
            self.history._make_room(analysis, newest - self._done.get(analysis, -1), layers)

    def _unpack(self, row) -> _Piece | None:
        """The records of one sample row not read before (None: none, or an analysis skipped)."""
        rowid, layout_id, count, first, listed, step, stride, steps, times, data = row
        if layout_id not in self._layouts:
            raise ValueError(f"sample row {rowid} refers to layout {layout_id}, which does not exist")
        layout = self._layouts[layout_id]
        if layout is None:
            return None
        steps = (step + stride * np.arange(count, dtype=np.int64) if steps is None
                 else np.frombuffer(steps, dtype="<i8"))
        times = np.frombuffer(times, dtype="<f8")
        numbers = (np.arange(first, first + count, dtype=np.int64) if listed is None
                   else np.frombuffer(listed, dtype="<i8"))
        values = np.frombuffer(data, dtype=layout.dtype)
        if not len(steps) == len(times) == len(numbers) == count or values.size != count * layout.size:
            raise ValueError(f"sample row {rowid} does not match its layout")
        values = values.reshape(count, len(layout.layers), *layout.shape)
        analysis = layout.analysis
        if analysis == "rwc" and layout.dtype.kind == "f" and layout.size:
            bad = ~np.isfinite(values.reshape(count, len(layout.layers), -1)).all(axis=2)
            for i, j in zip(*np.nonzero(bad)):
                self._nonfinite.setdefault(layout.layers[j], int(steps[i]))
        if not count:
            return None
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
        return notices

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
                        "contention", "overhead_seconds", "dropped", "deferred", "worker_seconds"):
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


def list_runs(folder="nnmodes_runs", *, recursive: bool = False,
              stale_after: float = STALE_AFTER) -> list[dict]:
    """The runs in ``folder`` (its subfolders too with ``recursive``), newest first: dicts of
    ``path``, ``name``, ``status``, ``steps`` (newest step recorded), ``started``, ``updated``
    (unix times), ``model``. Files that are not run files are skipped; a missing folder has
    none. Reads only each file's header and info."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        return []
    candidates = root.rglob("*") if recursive else root.iterdir()
    runs, now = [], time.time()
    for path in candidates:
        name = path.name
        if name.endswith(("-wal", "-shm", "-journal")) or (name.startswith(".") and name.endswith(".tmp")):
            continue
        try:
            if not path.is_file():
                continue
            with open(path, "rb") as f:
                head = f.read(72)
            if not head.startswith(SQLITE_MAGIC) or int.from_bytes(head[68:72], "big") != APPLICATION_ID:
                continue
            meta = peek(path)
        except (OSError, RunFileError):
            continue
        started = meta.get("started") if isinstance(meta.get("started"), (int, float)) else None
        times = [t for t in (meta.get("updated"), meta.get("heartbeat"), started)
                 if isinstance(t, (int, float))]
        runs.append({
            "path": os.fspath(path.absolute()),
            "name": name.removesuffix(SUFFIX),
            "status": run_status(meta, now, stale_after),
            "steps": meta.get("last_step") if isinstance(meta.get("last_step"), int) else 0,
            "started": started,
            "updated": max(times) if times else None,
            "model": meta.get("model"),
        })
    runs.sort(key=lambda r: r["started"] or 0.0, reverse=True)
    return runs


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
