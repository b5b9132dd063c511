#!/usr/bin/env bash
# Debian's Chromium for the browser tests (tests/system/test_dashboard_browser.py): Playwright
# drives /usr/bin/chromium; Playwright's own browser download cannot run on these machines.
# Installs it with apt-get when it is missing (needs root, as on CI); does nothing otherwise.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "chromium.sh: /usr/bin/chromium is missing; install Debian's chromium package (as root: apt-get install -y chromium)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
echo "chromium.sh: installed $(/usr/bin/chromium --version)"
