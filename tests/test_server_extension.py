"""The Jupyter server extension (SPEC 12): a read-only listing of the run files under the server's
root, authenticated like every Jupyter endpoint, serving nothing outside the root.

A real `jupyter server` on loopback (token, temporary root and configuration), with the extension
enabled by the installed wheel's jupyter-config file (nothing enabled by hand)."""

import hashlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from nnmodes_widgets.runs.run_writer import RunWriter
from nnmodes_widgets.jupyter.server_extension import PathRefused, list_under_root, resolve_folder

START_TIMEOUT = 90  # s; a loaded 2-core machine


def _write_run(path, steps, model="MLP", status="finished"):
    writer = RunWriter(path, {"model": model}, commit_every=0.1)
    for step in range(1, steps + 1):
        writer.record("rwc", step, 1.7e9 + step, {"fc1": step / 10, "fc2": 1.0})
    if status is None:        # left running: the caller closes it
        assert writer.flush(10)
        return writer
    writer.close(status)
    return None


def _copy_live(live: RunWriter, folder: Path, name: str, sides=("", "-wal", "-shm")) -> None:
    """The live run's file (and ``sides``) copied as ``folder/name``: a WAL-mode run that SQLite
    would give new side files, or whose -shm it would write, if it read it as it does by default."""
    folder.mkdir(parents=True, exist_ok=True)
    for side in sides:
        (folder / f"{name}{side}").write_bytes(Path(live.path + side).read_bytes())


def _set_meta(path, **items) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    for key, text in items.items():
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (text, key))
    db.close()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/: runs of each status, a hidden one, a non-run file, bad run files, WAL-mode copies of
    a live run, links in and out; outside/ and root-secret/ (a sibling whose name extends the
    root's): runs and folders the links point to."""
    base = tmp_path_factory.mktemp("server_ext")
    root, outside, sibling = base / "root", base / "outside", base / "root-secret"
    _write_run(root / "nnmodes_runs" / "alpha.nnmodes", 12)
    _write_run(root / "nnmodes_runs" / "beta.nnmodes", 7, status="interrupted")
    _write_run(root / "project" / "deep" / "gamma.nnmodes", 3, model="CNN")
    _write_run(root / ".hidden" / "secret.nnmodes", 1)
    _write_run(outside / "private.nnmodes", 5)
    _write_run(sibling / "sibling.nnmodes", 2)
    (root / "notes.nnmodes").write_text("not a run file")
    (root / "readme.txt").write_text("hello")
    (root / "escape").symlink_to(outside, target_is_directory=True)               # a folder out
    (root / "sib").symlink_to(sibling, target_is_directory=True)                  # a sibling out
    (root / "project" / "leak.nnmodes").symlink_to(outside / "private.nnmodes")  # a file out
    (root / "project" / "sibling.nnmodes").symlink_to(sibling / "sibling.nnmodes")
    (root / "project" / "alias.nnmodes").symlink_to(root / "nnmodes_runs" / "alpha.nnmodes")  # in
    # one bad file must not fail the rest: info nested too deeply to parse, non-finite numbers
    _write_run(root / "bad" / "nested.nnmodes", 2)
    _set_meta(root / "bad" / "nested.nnmodes", model="[" * 100_000 + "]" * 100_000)
    _write_run(root / "bad" / "nan.nnmodes", 2)
    _set_meta(root / "bad" / "nan.nnmodes", started="NaN", updated="Infinity", heartbeat="-Infinity")
    live = _write_run(root / "live" / "running.nnmodes", 4, status=None)
    try:
        _copy_live(live, root / "copies", "alone.nnmodes", sides=("",))   # its file alone
        _copy_live(live, root / "copies", "killed.nnmodes")    # with its -wal and -shm
        _copy_live(live, outside, "wal.nnmodes", sides=("",))
        _copy_live(live, sibling, "killed.nnmodes")
        (root / "project" / "wal-out.nnmodes").symlink_to(outside / "wal.nnmodes")
        (root / "project" / "killed-out.nnmodes").symlink_to(sibling / "killed.nnmodes")
        yield root, outside, live
    finally:
        live.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url, token, proc):
        self.url, self.token, self.proc = url, token, proc

    def request(self, path, *, token=True, method="GET", query=None, headers=None):
        """(status, body text) of a request; ``token``: True for the right one, a string for that
        one, None for none."""
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"token {self.token if token is True else token}"
        req = urllib.request.Request(url, method=method, headers=hdrs,
                                     data=b"{}" if method in ("POST", "PUT", "PATCH") else None)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def runs(self, **query):
        status, body = self.request("/nnmodes/runs", query=query)
        assert status == 200, (status, body)
        return json.loads(body)


@pytest.fixture(scope="module")
def server(tree, tmp_path_factory):
    root = tree[0]
    tmp = tmp_path_factory.mktemp("server_cfg")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), PYTHONUNBUFFERED="1")
    env.pop("JUPYTER_TOKEN", None)
    port, token = _free_port(), secrets.token_hex(24)
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    srv = Server(f"http://127.0.0.1:{port}", token, proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, f"jupyter server exited:\n{log_path.read_text()}"
            try:
                if srv.request("/api/status")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no jupyter server after {START_TIMEOUT} s:\n{log_path.read_text()}"
            time.sleep(0.2)
        assert "nnmodes_widgets: run listing at /nnmodes/runs" in log_path.read_text(), (
            "the server extension was not loaded (is the wheel's "
            "etc/jupyter/jupyter_server_config.d/nnmodes_widgets.json installed?):\n" + log_path.read_text())
        yield srv
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _snapshot(*folders):
    """Every file under ``folders`` (links not followed): its bytes' digest and its mtime."""
    files = {}
    for folder in folders:
        for here, dirs, names in os.walk(folder):
            for name in names + [d for d in dirs if os.path.islink(os.path.join(here, d))]:
                path = os.path.join(here, name)
                st = os.lstat(path)
                digest = None if os.path.islink(path) else hashlib.sha256(Path(path).read_bytes()).hexdigest()
                files[path] = (digest, st.st_mtime_ns, st.st_size)
    return files


# -- the listing ------------------------------------------------------------------------------------------


READABLE = {"nnmodes_runs/alpha.nnmodes", "nnmodes_runs/beta.nnmodes", "project/deep/gamma.nnmodes",
            "project/alias.nnmodes", "live/running.nnmodes", "copies/alone.nnmodes",
            "copies/killed.nnmodes", "bad/nan.nnmodes"}
UNREADABLE = {"notes.nnmodes": "not an SQLite database", "bad/nested.nnmodes": "nested too deeply"}


def test_lists_the_runs_under_the_root_relative_to_it(server, tree):
    root, outside, _ = tree
    listing = server.runs()
    runs = {r["path"]: r for r in listing["runs"] if r["status"] != "unreadable"}
    assert set(runs) == READABLE
    assert runs["nnmodes_runs/alpha.nnmodes"]["status"] == "finished"
    assert runs["nnmodes_runs/alpha.nnmodes"]["steps"] == 12
    assert runs["nnmodes_runs/alpha.nnmodes"]["name"] == "alpha"
    assert runs["nnmodes_runs/beta.nnmodes"]["status"] == "interrupted"
    assert runs["live/running.nnmodes"]["status"] == "running"
    assert runs["project/deep/gamma.nnmodes"]["model"] == "CNN"
    for run in runs.values():
        if run["path"] != "bad/nan.nnmodes":
            assert run["started"] <= run["updated"] <= listing["now"] + 1
    assert listing["folder"] == "" and listing["truncated"] is False
    assert abs(listing["now"] - time.time()) < 60
    # nothing of the server's file system beyond relative paths
    _, body = server.request("/nnmodes/runs")
    assert str(root) not in body and str(outside) not in body and "private" not in body
    assert "sibling" not in body and "wal-out" not in body and "killed-out" not in body


def test_one_bad_file_is_listed_unreadable_and_the_rest_listed(server):
    """Strict JSON (no NaN, no Infinity), HTTP 200, each bad file an "unreadable" entry with the
    reason, the good ones beside them."""
    status, body = server.request("/nnmodes/runs")
    assert status == 200

    def strict(constant):
        raise AssertionError(f"{constant} in the JSON answer")

    runs = {r["path"]: r for r in json.loads(body, parse_constant=strict)["runs"]}
    for path, reason in UNREADABLE.items():
        assert runs[path]["status"] == "unreadable" and reason in runs[path]["error"], runs[path]
        assert runs[path]["steps"] == 0 and runs[path]["started"] is None
    assert READABLE <= set(runs)
    assert all(runs[path]["error"] is None for path in READABLE)
    nan = runs["bad/nan.nnmodes"]
    assert nan["status"] == "finished" and nan["steps"] == 2
    assert nan["started"] is None and nan["updated"] is None


def test_wal_runs_are_read_from_their_wal_and_a_live_run_at_its_newest_commit(server, tree):
    live = tree[2]
    runs = {r["path"]: r for r in server.runs()["runs"]}
    assert runs["copies/killed.nnmodes"]["steps"] == 4     # its -wal read (the file holds none)
    assert runs["copies/alone.nnmodes"]["steps"] == 0
    assert runs["live/running.nnmodes"]["status"] == "running"
    steps = runs["live/running.nnmodes"]["steps"]
    live.record("rwc", steps + 1, time.time(), {"fc1": 0.5, "fc2": 1.0})
    live.record("rwc", steps + 2, time.time(), {"fc1": 0.5, "fc2": 1.0})
    assert live.flush(10)
    runs = {r["path"]: r for r in server.runs()["runs"]}     # (a commit changes the -wal only)
    assert runs["live/running.nnmodes"]["steps"] == steps + 2


def test_one_folder_and_not_recursive(server):
    assert {r["path"] for r in server.runs(folder="project")["runs"]} == {
        "project/alias.nnmodes", "project/deep/gamma.nnmodes"}
    assert {r["path"] for r in server.runs(folder="project", recursive="0")["runs"]} == {"project/alias.nnmodes"}
    assert server.runs(folder="project/deep/")["folder"] == "project/deep"
    assert server.runs(folder="./project/./deep")["folder"] == "project/deep"
    assert [r["path"] for r in server.runs(recursive="0")["runs"]] == ["notes.nnmodes"]


def test_requires_the_token(server):
    for token in (None, "wrong" + server.token[5:]):
        status, body = server.request("/nnmodes/runs", token=token)
        assert status == 403, (token, status, body)
        assert "alpha" not in body
    # the token as a URL parameter works as for every Jupyter endpoint
    status, body = server.request("/nnmodes/runs", token=None, query={"token": server.token})
    assert status == 200 and "alpha" in body


@pytest.mark.parametrize("folder, status", [
    ("..", 400), ("../", 400), ("nnmodes_runs/../..", 400), ("nnmodes_runs/..", 400), ("..\\..", 400),
    ("/", 400), ("/etc", 400), ("\\etc", 400), ("C:\\Windows", 400),
    ("a\x00b", 404),   # tornado turns control characters of arguments into spaces: "a b", not there
    ("escape", 403), ("escape/", 403), ("./escape", 403), ("sib", 403), ("sib/", 403),
    (".hidden", 404), ("nope", 404), ("readme.txt", 404),
])
def test_refuses_paths_outside_the_root(server, tree, folder, status):
    got, body = server.request("/nnmodes/runs", query={"folder": folder})
    assert got == status, (folder, got, body)
    assert "private" not in body and "alpha" not in body


def test_refuses_the_root_folder_given_as_an_absolute_path(server, tree):
    status, _ = server.request("/nnmodes/runs", query={"folder": str(tree[0])})
    assert status == 400
    status, _ = server.request("/nnmodes/runs", query={"folder": str(tree[1])})
    assert status == 400


def test_encoded_traversal_in_the_url_path_is_not_a_route(server):
    for path in ("/nnmodes/runs/..", "/nnmodes/runs/%2e%2e/%2e%2e", "/nnmodes/../nnmodes/runs/x"):
        status, body = server.request(path)
        assert status in (400, 403, 404), (path, status)
        assert "alpha" not in body


def test_only_reads(server, tree):
    """No method writes; listing many times leaves every file's bytes and mtime as they were (the
    run still being written is left out: its writer changes it) and adds no file, inside the root
    and outside (WAL-mode runs, linked to from inside, with and without their side files)."""
    root, outside, live = tree
    skip = Path(live.path)
    sibling = outside.parent / "root-secret"
    before = {p: v for p, v in _snapshot(root, outside, sibling).items() if not p.startswith(str(skip))}
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, _ = server.request("/nnmodes/runs", method=method, query={"folder": "nnmodes_runs"})
        assert status == 405, (method, status)
    for _ in range(3):
        server.runs()
        server.runs(folder="nnmodes_runs")
        server.request("/nnmodes/runs", query={"folder": "escape"})
    after = {p: v for p, v in _snapshot(root, outside, sibling).items() if not p.startswith(str(skip))}
    assert after == before


def test_the_server_never_loads_torch(server):
    server.runs()
    maps = Path(f"/proc/{server.proc.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc on this system")
    assert "libtorch" not in maps.read_text(), "the jupyter server process loaded torch"


# -- without a server -------------------------------------------------------------------------------------


def test_importing_the_extension_and_listing_leave_torch_out(tree):
    code = textwrap.dedent(f"""
        import sys
        import nnmodes_widgets.jupyter.server_extension as ext
        assert ext.list_under_root({str(tree[0])!r})["runs"]
        assert "nnmodes_widgets.runs.run_listing" in sys.modules
        heavy = sorted(m for m in ("torch", "ipywidgets", "bqplot", "sklearn", "matplotlib") if m in sys.modules)
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_resolve_folder(tree):
    root = os.path.realpath(tree[0])
    assert resolve_folder(root, "") == root
    assert resolve_folder(root, "project/deep") == os.path.join(root, "project", "deep")
    assert resolve_folder(root, ".hidden", allow_hidden=True) == os.path.join(root, ".hidden")
    for folder, status in (("..", 400), ("/tmp", 400), ("escape", 403), ("sib", 403), ("missing", 404),
                           (".hidden", 404)):
        with pytest.raises(PathRefused) as info:
            resolve_folder(root, folder)
        assert info.value.status == status, folder


def test_hidden_runs_are_listed_only_when_allowed(tree):
    root = tree[0]
    assert not any(".hidden" in r["path"] for r in list_under_root(root)["runs"])
    assert any(r["path"] == ".hidden/secret.nnmodes" for r in list_under_root(root, allow_hidden=True)["runs"])


def test_the_walk_is_bounded(tmp_path, monkeypatch):
    import nnmodes_widgets.jupyter.server_extension as ext

    deep = tmp_path.joinpath(*[f"d{i}" for i in range(ext.MAX_DEPTH + 3)])
    _write_run(deep / "far.nnmodes", 1)
    _write_run(tmp_path / "d0" / "near.nnmodes", 1)
    listing = list_under_root(tmp_path)
    assert [r["path"] for r in listing["runs"]] == ["d0/near.nnmodes"]
    assert listing["truncated"]             # (the far one, deeper than MAX_DEPTH, left out)
    monkeypatch.setattr(ext, "MAX_FOLDERS", 1)
    listing = list_under_root(tmp_path)
    assert listing["truncated"] and listing["runs"] == []


def test_a_tree_wider_than_the_bounds_is_truncated(tmp_path, monkeypatch):
    import nnmodes_widgets.jupyter.server_extension as ext

    for i in range(4):
        _write_run(tmp_path / f"f{i}" / "run.nnmodes", 1)
    monkeypatch.setattr(ext, "MAX_FOLDERS", 5)      # the root and its 4 folders: all of it
    listing = list_under_root(tmp_path)
    assert not listing["truncated"] and len(listing["runs"]) == 4
    for i in range(4, 10):
        _write_run(tmp_path / f"f{i}" / "run.nnmodes", 1)
    listing = list_under_root(tmp_path)             # folders left out, none below the last read
    assert listing["truncated"] and len(listing["runs"]) == 4
    monkeypatch.setattr(ext, "MAX_FOLDERS", 100)
    monkeypatch.setattr(ext, "MAX_FILES", 7)        # run files left out
    listing = list_under_root(tmp_path)
    assert listing["truncated"] and len(listing["runs"]) == 7
    monkeypatch.setattr(ext, "MAX_FILES", 10)
    assert not list_under_root(tmp_path)["truncated"]


@pytest.fixture
def opened(monkeypatch):
    """The paths opened (``open``, ``os.open``, ``sqlite3.connect``) and stat'ed from now on, the
    listing's cache emptied first."""
    import builtins
    import io

    from nnmodes_widgets.runs import run_listing

    run_listing._cache.clear()
    paths = {"open": [], "stat": []}

    def recording(kind, function):
        def record(path, *args, **kwargs):
            paths[kind].append(urllib.parse.unquote(os.fsdecode(path)))
            return function(path, *args, **kwargs)
        return record

    for module, name in ((builtins, "open"), (io, "open"), (os, "open"), (sqlite3, "connect")):
        monkeypatch.setattr(module, name, recording("open", getattr(module, name)))
    for name in ("stat", "lstat"):
        monkeypatch.setattr(os, name, recording("stat", getattr(os, name)))
    return paths


def test_files_that_are_not_runs_by_name_are_never_opened(tmp_path, opened):
    """A folder of many images costs one read of the folder: no image is opened or even stat'ed;
    a file named like a run that is not one is opened (its first bytes), and listed unreadable."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(300):
        (images / f"{i:04d}.png").write_bytes(b"\x89PNG\r\n" + bytes(200))
    (images / "fake.nnmodes").write_bytes(b"\x89PNG\r\n" + bytes(200))
    _write_run(images / "real.nnmodes", 3)
    opened["open"].clear()
    opened["stat"].clear()
    runs = {r["path"]: r for r in list_under_root(tmp_path)["runs"]}
    assert runs["images/real.nnmodes"]["steps"] == 3
    assert runs["images/fake.nnmodes"]["status"] == "unreadable"
    assert runs["images/fake.nnmodes"]["error"] == "not an SQLite database"
    assert not [p for p in opened["open"] + opened["stat"] if ".png" in p]
    assert any(p.endswith("fake.nnmodes") for p in opened["open"])


def test_links_out_of_the_root_are_never_opened(tree, opened):
    """Including a link into a sibling folder whose name extends the root's."""
    root, outside, _ = tree
    runs = {r["path"] for r in list_under_root(root)["runs"]}
    assert not runs & {"project/leak.nnmodes", "project/sibling.nnmodes", "project/wal-out.nnmodes",
                       "project/killed-out.nnmodes"}
    out = (str(outside.resolve()), str((outside.parent / "root-secret").resolve()))
    assert opened["open"] and not [p for p in opened["open"] if out[0] in p or out[1] in p]


def test_an_unchanged_file_is_read_once(tmp_path, opened):
    """The listing is cached by path, size and modification time: listing again opens nothing;
    a file that changed is read again, and only that one."""
    for name in ("a", "b"):
        _write_run(tmp_path / f"{name}.nnmodes", 3)
    list_under_root(tmp_path)
    opened["open"].clear()
    again = list_under_root(tmp_path)
    assert opened["open"] == [] and [r["steps"] for r in again["runs"]] == [3, 3]
    _set_meta(tmp_path / "b.nnmodes", last_step="9")
    opened["open"].clear()
    runs = {r["path"]: r["steps"] for r in list_under_root(tmp_path)["runs"]}
    assert runs == {"a.nnmodes": 3, "b.nnmodes": 9}
    assert opened["open"] and all(p.endswith("b.nnmodes") or "b.nnmodes?" in p for p in opened["open"])
