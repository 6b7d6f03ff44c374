#!/usr/bin/env bash
# System programs the tests run that no Python package ships: PgBouncer (Debian's `pgbouncer`).
# Installed with apt-get when missing, as root where apt-get exists (as bootstrap.sh installs uv);
# elsewhere this fails with the command to run, so that no test is skipped for want of it.
set -euo pipefail

have() {
  PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1
}

if ! have pgbouncer; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test tools: installing pgbouncer (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be missing (a fresh container) or stale.
    apt-get install -y --no-install-recommends pgbouncer >&2 ||
      { apt-get update >&2 && apt-get install -y --no-install-recommends pgbouncer >&2; }
  else
    echo "test tools: PgBouncer is missing and cannot be installed here; run: sudo apt-get install -y pgbouncer" >&2
    exit 1
  fi
fi
