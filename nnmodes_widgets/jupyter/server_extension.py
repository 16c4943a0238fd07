"""Jupyter server extension (SPEC 12): a read-only listing of the run files under the server's root.

``GET {base_url}nnmodes/runs?folder=<relative folder>&recursive=<0|1>`` answers
``{"folder", "now", "truncated", "runs": [{"path", "name", "status", "steps", "started",
"updated", "model", "error"}]}``, each ``path`` relative to the server's root directory
(``/``-separated), ``now`` the server's clock (unix time) for the "last update" ages; a file named
like a run that is not one this version reads has ``status`` "unreadable" and the reason in
``error``. Strict JSON: no NaN or Infinity.

What it guards:

- authentication and authorization as every Jupyter endpoint: ``APIHandler`` (token or cookie,
  XSRF), ``@tornado.web.authenticated``, and the authorizer asked for "read" on "contents";
- nothing outside the root: ``folder`` absolute, with a ``..`` part, or with a NUL is a 400;
  a folder that resolves outside the root (a symlink pointing out) is a 403; a run file whose
  real path is outside the root (compared by path components) is left out before it is opened;
  hidden folders and files are refused and skipped unless the contents manager allows hidden
  files;
- nothing written: the files are read through ``runs.run_listing.scan`` (recognised by name and
  header before they are opened, read-only without SQLite side files, cached); the handler has
  no other method than GET;
- bounded work: the walk descends at most ``MAX_DEPTH`` folders, visits at most ``MAX_FOLDERS``,
  reads at most ``MAX_FILES`` run files (``truncated`` is true whenever a bound left something
  out), skips ``SKIPPED`` folders and never follows folder links; it runs in a worker thread, off
  the server's event loop; one bad file is one "unreadable" entry.

Imports the standard library, tornado, jupyter_server and the run listing (standard library;
no NumPy, no torch). Enabled by ``jupyter-config/jupyter_server_config.d/nnmodes_widgets.json``.
"""

from __future__ import annotations

import json
import os
import time

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop

from ..runs.run_listing import inside, scan

__all__ = ["RunsHandler", "list_under_root", "MAX_DEPTH", "MAX_FOLDERS", "MAX_FILES"]

MAX_DEPTH = 6            # folders below the one asked for
MAX_FOLDERS = 1000       # folders read in one listing
MAX_FILES = 5000         # run files read in one listing
SKIPPED = frozenset({"node_modules", "__pycache__", "site-packages", ".git", ".ipynb_checkpoints"})


class PathRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def resolve_folder(root: str, folder: str, allow_hidden: bool = False) -> str:
    """The real path of ``folder`` (relative to the real path ``root``); PathRefused (400, 403,
    404) when it is malformed, escapes the root, is hidden or is not a folder."""
    if "\x00" in folder:
        raise PathRefused(400, "folder contains a NUL character")
    parts = [p for p in folder.replace("\\", "/").split("/") if p not in ("", ".")]
    if folder.startswith(("/", "\\")) or os.path.isabs(folder) or (len(folder) > 1 and folder[1] == ":"):
        raise PathRefused(400, "folder must be relative to the server's root directory")
    if ".." in parts:
        raise PathRefused(400, "folder must not contain '..'")
    if not allow_hidden and any(p.startswith(".") for p in parts):
        raise PathRefused(404, "no such folder")
    target = os.path.realpath(os.path.join(root, *parts))
    if not inside(target, root):
        raise PathRefused(403, "folder is outside the server's root directory")
    if not os.path.isdir(target):
        raise PathRefused(404, "no such folder")
    return target


def list_under_root(root: str, folder: str = "", *, recursive: bool = True,
                    allow_hidden: bool = False) -> dict:
    """The listing the endpoint answers (``root``: the server's root directory)."""
    root = os.path.realpath(root)
    top = resolve_folder(root, folder, allow_hidden)
    runs, truncated = scan(top, root=root, recursive=recursive, max_depth=MAX_DEPTH,
                           max_folders=MAX_FOLDERS, max_files=MAX_FILES,
                           allow_hidden=allow_hidden, skipped=SKIPPED)
    below = len(root.rstrip(os.sep) + os.sep)     # (every path is below the root, as found)
    for run in runs:
        run["path"] = run["path"][below:].replace(os.sep, "/")
    runs.sort(key=lambda r: (-(r["started"] or 0.0), r["path"]))
    return {"folder": "" if top == root else os.path.relpath(top, root).replace(os.sep, "/"),
            "now": time.time(), "truncated": truncated, "runs": runs}


class RunsHandler(APIHandler):
    """``GET /nnmodes/runs``: the runs under the root (module docstring)."""

    auth_resource = "contents"

    @web.authenticated
    @authorized("read")
    async def get(self):
        folder = self.get_query_argument("folder", "")
        recursive = self.get_query_argument("recursive", "1") not in ("0", "false", "no")
        root = self.settings["server_root_dir"]
        allow_hidden = bool(getattr(self.settings.get("contents_manager"), "allow_hidden", False))
        try:
            listing = await IOLoop.current().run_in_executor(
                None, lambda: list_under_root(root, folder, recursive=recursive, allow_hidden=allow_hidden))
        except PathRefused as exc:
            raise web.HTTPError(exc.status, str(exc)) from None
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(listing, allow_nan=False))   # (every number finite: run_listing)


def _jupyter_server_extension_points():
    return [{"module": "nnmodes_widgets.jupyter.server_extension"}]


def _load_jupyter_server_extension(serverapp):
    web_app = serverapp.web_app
    route = url_path_join(web_app.settings["base_url"], "nnmodes", "runs")
    web_app.add_handlers(".*$", [(route, RunsHandler)])
    serverapp.log.info("nnmodes_widgets: run listing at %s", route)


load_jupyter_server_extension = _load_jupyter_server_extension   # the pre-2.0 name
