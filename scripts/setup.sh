# Sourced by scripts/start and scripts/test: bring this checkout to a working state, idempotently.
#   .venv with torch (installed first, so no other torch build is pulled in) and the package's
#   dependencies; the JS bundle built; the package built as a wheel and installed from it.
# Set TORCH_SPEC to choose another torch (default torch==2.13.0, a local CPU wheel on our machines).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

need() {
  command -v "$1" >/dev/null 2>&1 || { log "missing $1: $2"; exit 1; }
}

setup_python() {
  need python3 "install Python 3.10 or newer"
  if [ ! -x "$PY" ]; then
    log "creating virtual environment in .venv"
    python3 -m venv "$VENV"
  fi
  if ! "$PY" -c 'import torch' 2>/dev/null; then
    log "installing $TORCH_SPEC"
    "$PY" -m pip install -q "$TORCH_SPEC"
  fi
  # Dependencies change with pyproject.toml only: a stamp skips the resolver on re-runs.
  local stamp="$VENV/.deps-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
  if [ ! -e "$stamp" ]; then
    log "installing dependencies"
    "$PY" -m pip install -q build hatchling "hatch-jupyter-builder>=0.9"
    "$PY" - "$ROOT/pyproject.toml" > "$VENV/.requirements.txt" <<'PYEOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))
PYEOF
    "$PY" -m pip install -q -r "$VENV/.requirements.txt"
    rm -f "$VENV"/.deps-*
    touch "$stamp"
  fi
}

setup_package() {
  need node "install Node.js 18+ (only to build the front-end; the built wheel needs none)"
  need npm "install npm (comes with Node.js)"
  cd "$ROOT"
  local stamp="node_modules/.lock-$(sha1sum package-lock.json | cut -c1-12)"
  if [ ! -e "$stamp" ]; then
    log "installing JS build tools (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
    touch "$stamp"
  fi
  # The wheel changes with the sources only: a stamp of their contents skips the minute of
  # building on re-runs (scripts/start after scripts/test, a test that runs scripts/start).
  local sources stamp
  sources="$(git -C "$ROOT" ls-files -co --exclude-standard -- nnmodes_widgets js labextension \
    jupyter-config pyproject.toml package.json package-lock.json README.md 2>/dev/null |
    LC_ALL=C sort | (cd "$ROOT" && xargs -d '\n' sha1sum 2>/dev/null) | sha1sum | cut -c1-12)" || sources=""
  stamp="$VENV/.wheel-$sources"
  if [ -n "$sources" ] && [ -e "$stamp" ] && compgen -G "$ROOT/dist/nnmodes_widgets-*.whl" >/dev/null &&
     "$PY" -c 'import nnmodes_widgets' 2>/dev/null; then
    return
  fi
  log "building the wheel (python -m build: esbuild bundle and lab extension included)"
  rm -rf dist "$VENV"/.wheel-*
  # the venv's bin on PATH: `npm run build:lab` runs its `jupyter labextension build`
  PATH="$VENV/bin:$PATH" "$PY" -m build --wheel --no-isolation --outdir dist . >"$VENV/.build.log" 2>&1 ||
    { cat "$VENV/.build.log" >&2; exit 1; }
  "$PY" -m pip install -q --no-deps --force-reinstall dist/nnmodes_widgets-*.whl
  [ -z "$sources" ] || touch "$stamp"
}

setup_chromium() {
  if [ -x /usr/bin/chromium ]; then return; fi
  log "installing Debian's chromium for the browser tests"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
}
