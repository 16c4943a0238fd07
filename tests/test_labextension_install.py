"""The wheel carries the prebuilt JupyterLab extension and the server extension's switch (SPEC 12):
installed into a fresh virtual environment (no system site packages) beside JupyterLab, Jupyter
lists the lab extension as enabled and OK and the server extension as enabled, with no build step.

The wheel is the one scripts/setup.sh built into dist/ (scripts/test builds it first)."""

import json
import os
import re
import subprocess
import sys
import venv
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXT = "share/jupyter/labextensions/nnmodes-widgets"
SERVER_CONFIG = "etc/jupyter/jupyter_server_config.d/nnmodes_widgets.json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
INSTALL_TIMEOUT = 900   # s: pip resolving and installing JupyterLab on a loaded 2-core machine


def _wheel():
    wheels = sorted((REPO / "dist").glob("nnmodes_widgets-*.whl"))
    assert len(wheels) == 1, (f"expected one wheel in {REPO / 'dist'}, found {wheels}: build it with "
                              "bash -c 'source scripts/setup.sh; setup_python; setup_package'")
    return wheels[0]


def test_the_wheel_carries_the_prebuilt_extension_and_the_server_switch():
    with zipfile.ZipFile(_wheel()) as whl:
        names = whl.namelist()
        data = next(n.split("/data/")[0] + "/data/" for n in names if ".data/data/" in n)
        package = json.loads(whl.read(f"{data}{EXT}/package.json"))
        assert package["name"] == "nnmodes-widgets"
        entry = package["jupyterlab"]["_build"]["load"]     # static/remoteEntry.<hash>.js
        assert re.fullmatch(r"static/remoteEntry\.[0-9a-f]+\.js", entry), entry
        assert f"{data}{EXT}/{entry}" in names
        assert f"{data}{EXT}/static/style.js" in names
        install = json.loads(whl.read(f"{data}{EXT}/install.json"))
        assert install["packageName"] == "nnmodes_widgets" and install["packageManager"] == "python"
        config = json.loads(whl.read(f"{data}{SERVER_CONFIG}"))
        assert config == {"ServerApp": {"jpserver_extensions": {"nnmodes_widgets.jupyter.server_extension": True}}}
        assert "nnmodes_widgets/jupyter/server_extension.py" in names
        # only what was built: no second copy inside the package, no source maps of the build tools
        assert not any(n.startswith("nnmodes_widgets/labextension/") for n in names)


@pytest.mark.slow
def test_a_fresh_environment_lists_the_extensions_enabled_and_ok(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    bin_dir = env_dir / "bin"
    python = bin_dir / "python"
    cfg = subprocess.run([python, "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
                         capture_output=True, text=True, check=True)
    assert cfg.stdout.strip() == "True"
    assert "include-system-site-packages = false" in (env_dir / "pyvenv.cfg").read_text()
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # the package without its dependencies (no torch, no widgets)
    subprocess.run([*pip, "--no-deps", str(_wheel())], check=True, timeout=INSTALL_TIMEOUT)
    # the JupyterLab this suite runs with (from pip's cache when it holds it), and NumPy: the server
    # extension reads run files with the package's torch-free reader
    subprocess.run([*pip, f"jupyterlab=={version('jupyterlab')}", f"numpy=={version('numpy')}"],
                   check=True, timeout=INSTALL_TIMEOUT)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"]), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))

    def jupyter(*args):
        out = subprocess.run([bin_dir / "jupyter", *args], env=env, capture_output=True, text=True, timeout=300)
        text = ANSI.sub("", out.stdout + out.stderr)
        assert out.returncode == 0, text
        return text

    labext = jupyter("labextension", "list")
    assert re.search(rf"{re.escape(str(env_dir))}/share/jupyter/labextensions\n(.*\n)*?\s+"
                     r"nnmodes-widgets v0\.1\.0 enabled OK \(python, nnmodes_widgets\)", labext), labext
    # prebuilt: nothing asks for `jupyter lab build`
    assert "build recommended" not in labext.lower() and "lab build" not in labext, labext
    assert (env_dir / EXT / "package.json").is_file()

    server = jupyter("server", "extension", "list")
    assert re.search(r"nnmodes_widgets\.jupyter\.server_extension enabled", server), server
    assert re.search(r"nnmodes_widgets\.jupyter\.server_extension\s+OK", server), server
    assert (env_dir / SERVER_CONFIG).is_file()
