#!/usr/bin/env bash
# Chromium for the browser tests (tests/test_browser.py): Debian's package, at /usr/bin/chromium.
#
#   scripts/chromium.sh    install it if it is missing; print its version
#
# Where it is missing and we may use the system package manager (root, or password-less sudo),
# it is installed with apt-get from Debian's packages. Playwright's own browser download
# ('playwright install') is never used: it needs the internet. Diagnostics go to stderr; the exit
# status is non-zero when no Chromium can be had.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

log() { printf 'chromium: %s\n' "$*" >&2; }

# as_root and apt_install
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/apt.sh"

if [ ! -x "$CHROMIUM" ]; then
  apt_install chromium \
    || { log "$CHROMIUM is missing and cannot be installed (needs apt-get as root or with sudo): the browser tests will be skipped, or fail with CI=true"; exit 1; }
  [ -x "$CHROMIUM" ] || { log "the chromium package did not provide $CHROMIUM"; exit 1; }
fi
# A CJK font: the wall speaks Chinese, and the plans' and places' names are Chinese. WenQuanYi
# Micro Hei is Debian's small one (a wall's own OS usually has Noto Sans CJK or YaHei already).
if command -v fc-list >/dev/null && [ -z "$(fc-list :lang=zh family 2>/dev/null | head -n1)" ]; then
  apt_install fonts-wqy-microhei || log "no Chinese font could be installed: Chinese text will show as boxes"
fi
# Debian's wrapper script complains on stderr about its own memory check; the version is what counts.
log "$("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM (version unknown)")"
