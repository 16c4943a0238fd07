"""The main command starts clean (issue 26): `scripts/start` brings JupyterLab up on the
quickstart with no error or stack trace on the terminal (JupyterLab's yarn-registry query fails
under some Node.js versions: the server runs with no Node.js on its PATH), and its own output
ends with one line saying where to open the quickstart, an address that serves it."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPEN_LINE = re.compile(r"\[start\]\S* Open the quickstart: (http://\S+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
ALARMING = re.compile(r"Traceback|Error|error:|\[E |Fail to get|Dynamic require")
STARTUP_TIMEOUT = 300     # s: the set-up steps are stamped, but a stale wheel is rebuilt first


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_start_prints_no_error_and_ends_with_where_to_open_the_quickstart():
    proc = subprocess.Popen([str(REPO / "scripts" / "start"), "--no-browser", f"--port={_free_port()}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines, found = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(ANSI.sub("", line.rstrip("\n")))
            if OPEN_LINE.search(lines[-1]):
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(STARTUP_TIMEOUT), "no '[start] Open the quickstart' line:\n" + "\n".join(lines)
        url = OPEN_LINE.search(next(l for l in lines if OPEN_LINE.search(l))).group(1)
        # the address serves the quickstart: the page, and the notebook through the contents API
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200
        base, token = url.split("/lab/tree/")[0], url.split("token=")[1]
        with urllib.request.urlopen(f"{base}/api/contents/quickstart.ipynb?token={token}", timeout=30) as r:
            assert json.load(r)["type"] == "notebook"
        own = [l for l in lines if l.startswith("[start]") or l.startswith("[setup]")]
        assert OPEN_LINE.search(own[-1]), f"the script's own output must end with the address: {own}"
    finally:
        os.killpg(proc.pid, signal.SIGINT)      # Ctrl-C, as a user stops it
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=10)
    alarming = [l for l in lines if ALARMING.search(l)]
    assert not alarming, "alarming lines on a healthy start:\n" + "\n".join(alarming)
