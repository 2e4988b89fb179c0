#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries are here for the distributed tests, which start their own
# throwaway server on 127.0.0.1 (tests/distributed/conftest.py). Installs Debian's package when they
# are missing; needs root (or sudo) for that.
set -euo pipefail
if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
ls /usr/lib/postgresql/*/bin/initdb >/dev/null
