#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (initdb, postgres) are present:
# installs Debian's postgresql package when they are missing and we are root,
# otherwise says what to install.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "PostgreSQL server binaries not found: install them (Debian: sudo apt-get install postgresql)" >&2
  exit 1
fi
echo "installing PostgreSQL server binaries from Debian..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
