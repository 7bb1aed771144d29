#!/usr/bin/env bash
# Mosquitto for the MQTT ingestion tests and benchmark (tests/test_mqtt.py,
# benchmarks/bench_mqtt.py): Debian's mosquitto (the broker, /usr/sbin/mosquitto) and
# mosquitto-clients (mosquitto_pub, mosquitto_sub).
#
#   scripts/mosquitto.sh            install them if they are missing; print the broker's version
#   scripts/mosquitto.sh --start    the same, then start the machine's broker (the Debian
#                                   package's service, localhost:1883) if none is listening
#                                   there; 'make mosquitto' (so 'make test' and .ci/run) does
#
# The tests never rely on the machine's broker for what they check: each test module starts
# its own from /usr/sbin/mosquitto on a free port with a config of its own, so that it can stop
# and restart it. One test (tests/test_mqtt.py) checks that the machine's broker, started here,
# carries a message between Debian's own clients.
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

[ "${1:-}" = --start ] || exit 0

# Is a broker listening on localhost:1883? (bash's /dev/tcp: no extra tool needed)
listening() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }

if listening; then
  log "a broker is listening on localhost:1883"
  exit 0
fi
log "no broker on localhost:1883: starting the Debian package's"
# The broker itself as a daemon, with the package's configuration (Mosquitto 2: localhost only
# by default). Not the package's init script: it writes the pid file as root before the broker,
# which then runs as 'mosquitto', fails to write it and exits ("Unable to write pid file").
# A pid file left by a broker that is gone is removed for the same reason.
pid_file=/run/mosquitto/mosquitto.pid
if [ -f "$pid_file" ] && ! kill -0 "$(cat "$pid_file" 2>/dev/null)" 2>/dev/null; then
  as_root rm -f "$pid_file" || true
fi
as_root install -d -o mosquitto -g mosquitto /run/mosquitto 2>/dev/null || true
as_root "$MOSQUITTO" -d -c /etc/mosquitto/mosquitto.conf >&2 || true
for _ in 1 2 3 4 5 6 7 8 9 10; do
  listening && { log "the broker answers on localhost:1883"; exit 0; }
  sleep 0.5
done
log "the Debian broker did not start on localhost:1883 (see /var/log/mosquitto/mosquitto.log)"
exit 1
