#!/usr/bin/env bash
# GDAL's command-line tools for the OGC API Features client tests (tests/test_ogc_clients.py):
# Debian's gdal-bin, whose ogrinfo and ogr2ogr read /ogc through GDAL's OAPIF driver.
#
#   scripts/gdal.sh    install it if it is missing; print its version
#
# Where ogrinfo is missing and we may use the system package manager (root, or password-less
# sudo), gdal-bin is installed with apt-get from Debian's packages. Diagnostics go to stderr; the
# exit status is non-zero when no GDAL can be had (the tests then skip, or fail with CI=true).
set -euo pipefail

log() { printf 'gdal: %s\n' "$*" >&2; }

# as_root and apt_install
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/apt.sh"

if ! command -v ogrinfo >/dev/null; then
  apt_install gdal-bin \
    || { log "ogrinfo is missing and cannot be installed (needs apt-get as root or with sudo): the GDAL tests will be skipped, or fail with CI=true"; exit 1; }
  command -v ogrinfo >/dev/null || { log "the gdal-bin package did not provide ogrinfo"; exit 1; }
fi
ogrinfo --formats | grep -q 'OAPIF' || { log "this GDAL has no OAPIF (OGC API Features) driver"; exit 1; }
log "$(ogrinfo --version)"
