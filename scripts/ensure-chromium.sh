#!/usr/bin/env bash
# Makes sure a headless Chromium is present for the status page's browser
# test: installs Debian's chromium package when it is missing and we are
# root, otherwise says what to install.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium not found: install it (Debian: sudo apt-get install chromium)" >&2
  exit 1
fi
echo "installing Chromium from Debian..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
