"""Listing run files (SPEC 11, 14): ``list_runs``, and ``scan``, which the server's listing uses.

A listing faces folders it does not control (a server's root, a shared folder) and runs every few
seconds while the Runs panel is open, so:

- a file is a candidate by its name alone (``SUFFIX``): nothing else in a folder is opened, or
  even stat'ed, and a folder of many images costs one read of the folder;
- a candidate's real path is checked against ``root`` (by path components) before anything opens
  it: a link out of the root is left out;
- a candidate is recognised by its first 100 bytes, then read read-only, creating and changing
  no file (``run_file.open_checked``), and only the meta items a listing shows are read;
- any one bad file is an entry of status "unreadable" with the reason; the rest are listed;
- what was read is cached by real path, keyed by the size and modification time of the file and
  of its -wal (where a live run commits): an unchanged file is not opened again, and the status
  is judged afresh at every listing (a heartbeat grows old without the file changing);
- every number in an entry is finite or None (strict JSON), every string bounded.

Needs the standard library only.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path

from .run_file import STALE_AFTER, SUFFIX, RunFileError, file_key, finite, peek, run_status

__all__ = ["list_runs", "scan", "entry", "inside", "UNREADABLE", "CACHE_SIZE"]

UNREADABLE = "unreadable"       # the status of a candidate that is not a run file this version reads
CACHE_SIZE = 10_000             # files whose listing is kept (a few hundred bytes each)
_LIVENESS = ("status", "heartbeat", "pid", "pid_started", "host", "boot_id")   # what run_status reads
_LISTED = (*_LIVENESS, "started", "updated", "last_step", "model")
_MAX_TEXT = 256                 # characters kept of a string from a file
_MAX_STEP = 2 ** 53             # steps a JavaScript number holds exactly


class _Cache:
    """What was read of each file (by real path), with the key it was read under; the least
    recently used go first past ``CACHE_SIZE``. Shared by the server's listing threads."""

    def __init__(self):
        self._items: OrderedDict[str, tuple[tuple, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, real: str, key: tuple) -> dict | None:
        with self._lock:
            item = self._items.get(real)
            if item is None or item[0] != key:
                return None
            self._items.move_to_end(real)
            return item[1]

    def put(self, real: str, key: tuple, read: dict) -> None:
        with self._lock:
            self._items[real] = (key, read)
            self._items.move_to_end(real)
            while len(self._items) > CACHE_SIZE:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = _Cache()


def inside(path: str, root: str) -> bool:
    """Whether the real path ``path`` is the real path ``root`` or below it, by path components
    (``/srv-secret`` is not below ``/srv``)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _text(value) -> str | None:
    return value[:_MAX_TEXT] if isinstance(value, str) else None


def _read(real: str) -> dict:
    """What a listing shows of the file ``real`` (before its status is judged): its sanitised
    fields, or ``{"error": reason}``."""
    try:
        meta = peek(real, keys=_LISTED)
    except RunFileError as exc:
        return {"error": exc.reason}
    started = finite(meta.get("started"))
    times = [t for t in (finite(meta.get("updated")), finite(meta.get("heartbeat")), started)
             if t is not None]
    steps = meta.get("last_step")
    liveness = {k: meta[k] for k in _LIVENESS if isinstance(meta.get(k), (int, float))}
    liveness.update((k, _text(meta[k])) for k in _LIVENESS if isinstance(meta.get(k), str))
    return {"error": None, "started": started, "updated": max(times) if times else None,
            "steps": steps if type(steps) is int and abs(steps) < _MAX_STEP else 0,
            "model": _text(meta.get("model")), "liveness": liveness}


def entry(path: str, real: str, root: str | None, now: float, stale_after: float) -> dict | None:
    """The listing entry of the candidate file ``path`` (absolute; its real path ``real``):
    ``path``, ``name``, ``status`` ("running", "finished", "interrupted", judged at ``now``; or
    "unreadable", the reason in ``error``, else None), ``steps`` (newest step recorded),
    ``started``, ``updated`` (unix times, or None), ``model``. None when ``real`` is outside
    ``root`` (a real path)."""
    if root is not None and not inside(real, root):
        return None
    name = os.path.basename(path).removesuffix(SUFFIX)
    try:
        st = os.lstat(real)
        key = file_key(real, st)
    except OSError as exc:
        read, st = {"error": "no such file" if isinstance(exc, FileNotFoundError) else
                    f"cannot be read: {exc.strerror or exc}"}, None
    else:
        read = _cache.get(real, key)
        if read is None:
            read = _read(real)
            try:
                if file_key(real, os.lstat(real)) == key:     # (not changed while read)
                    _cache.put(real, key, read)
            except OSError:
                pass
    if read["error"] is not None:
        return {"path": path, "name": name, "status": UNREADABLE, "steps": 0, "started": None,
                "updated": finite(st.st_mtime) if st is not None else None, "model": None,
                "error": read["error"]}
    return {"path": path, "name": name,
            "status": run_status(read["liveness"], now, stale_after),
            "steps": read["steps"], "started": read["started"], "updated": read["updated"],
            "model": read["model"], "error": None}


def scan(top, *, root: str | None = None, recursive: bool = True, max_depth: int | None = None,
         max_folders: int | None = None, max_files: int | None = None, allow_hidden: bool = True,
         skipped=frozenset(), stale_after: float = STALE_AFTER) -> tuple[list[dict], bool]:
    """The entries (``entry``) of the candidates in the folder ``top`` and, with ``recursive``,
    its subfolders, breadth first (never through a folder link, nor into ``skipped`` names or,
    without ``allow_hidden``, names starting with "."), and whether anything was left out by the
    bounds: folders deeper than ``max_depth`` below ``top``, more than ``max_folders`` folders,
    more than ``max_files`` candidates. Candidates outside ``root`` are left out (not a bound)."""
    now = time.time()
    entries, truncated, folders = [], False, 0
    # (below a real top, reached through no link, a file that is no link is its own real path)
    top = os.path.realpath(top) if root is not None else os.path.abspath(top)
    queue = deque([(top, 0)])
    while queue:
        if max_folders is not None and folders >= max_folders:
            truncated = True
            break
        here, depth = queue.popleft()
        folders += 1
        files, folders_here = [], []
        try:
            with os.scandir(here) as items:
                for item in items:
                    name = item.name
                    if not allow_hidden and name.startswith("."):
                        continue
                    try:      # (the folder's own record of the type: no stat, nothing opened)
                        folder = item.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if not folder and name.endswith(SUFFIX):
                        files.append((item.path, item.is_symlink()))
                    elif folder and recursive and name not in skipped:
                        folders_here.append(item.path)
        except OSError:
            continue            # gone, or not ours to read
        if folders_here and max_depth is not None and depth >= max_depth:
            truncated = True
        else:
            queue.extend((path, depth + 1) for path in sorted(folders_here))
        for path, link in sorted(files):
            if max_files is not None and len(entries) >= max_files:
                return entries, True
            real = os.path.realpath(path) if link or root is None else path
            found = entry(path, real, root, now, stale_after)
            if found is not None:
                entries.append(found)
    return entries, truncated


def list_runs(folder="nnmodes_runs", *, recursive: bool = False,
              stale_after: float = STALE_AFTER) -> list[dict]:
    """The run files (``SUFFIX``) in ``folder`` (its subfolders too with ``recursive``), newest
    first: dicts of ``path``, ``name``, ``status``, ``steps`` (newest step recorded),
    ``started``, ``updated`` (unix times), ``model``, ``error``. A file that is not a run file
    this version reads is listed with status "unreadable" and the reason in ``error``; a missing
    folder has none. Reads only each file's header and a few info items, and nothing of a file
    unchanged since the last listing."""
    top = Path(folder).expanduser()
    if not top.is_dir():
        return []
    runs, _ = scan(top, recursive=recursive, stale_after=stale_after)
    runs.sort(key=lambda r: r["started"] or 0.0, reverse=True)
    return runs
