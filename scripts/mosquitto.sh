#!/usr/bin/env bash
# Mosquitto for the MQTT ingestion tests and benchmark (tests/test_mqtt.py,
# benchmarks/bench_mqtt.py): Debian's mosquitto (the broker, /usr/sbin/mosquitto) and
# mosquitto-clients (mosquitto_pub, mosquitto_sub).
#
#   scripts/mosquitto.sh    install them if they are missing; print the broker's version
#
# The tests never use a broker already running on the machine (one may listen on 1883): each
# test module starts its own from /usr/sbin/mosquitto on a free port with a config of its own,
# so that it can stop and restart it. The Debian package's own service is left as it is.
# Diagnostics go to stderr; the exit status is non-zero when no Mosquitto can be had (the
# tests then skip, or fail with CI=true).
set -euo pipefail

MOSQUITTO=/usr/sbin/mosquitto

log() { printf 'mosquitto: %s\n' "$*" >&2; }

# as_root and apt_install
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/apt.sh"

if [ ! -x "$MOSQUITTO" ] || ! command -v mosquitto_pub >/dev/null || ! command -v mosquitto_sub >/dev/null; then
  apt_install mosquitto mosquitto-clients \
    || { log "$MOSQUITTO or its clients are missing and cannot be installed (needs apt-get as root or with sudo): the MQTT tests will be skipped, or fail with CI=true"; exit 1; }
  [ -x "$MOSQUITTO" ] || { log "the mosquitto package did not provide $MOSQUITTO"; exit 1; }
  command -v mosquitto_pub >/dev/null || { log "the mosquitto-clients package did not provide mosquitto_pub"; exit 1; }
fi
# 'mosquitto -h' prints its version first, and exits non-zero.
log "$({ "$MOSQUITTO" -h 2>/dev/null || true; } | head -n1)"
