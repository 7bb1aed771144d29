#!/usr/bin/env bash
# nginx for the test of the deployment's front (tests/test_nginx_front.py): Debian's nginx, the
# binary /usr/sbin/nginx, which the test runs with deploy/nginx/rallypoint.conf in front of two
# 'rallypoint serve' processes.
#
#   scripts/nginx.sh    install it if it is missing; print its version
#
# The test never uses the machine's nginx service, its configuration or port 80: it runs a
# master process of its own (nginx -p <its folder> -c <its config> -g 'daemon off;') on a free
# loopback port, with its pid file, logs and temporary files in its own folder. Installing the
# package may start the service (Debian's postinst does, where services may start); this script
# neither starts nor stops it.
# Where nginx is missing and we may use the system package manager (root, or password-less
# sudo), it is installed with apt-get from Debian's packages. Diagnostics go to stderr; the exit
# status is non-zero when no nginx can be had (the test then skips, or fails with CI=true).
set -euo pipefail

NGINX=/usr/sbin/nginx

log() { printf 'nginx: %s\n' "$*" >&2; }

# as_root and apt_install
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/apt.sh"

if [ ! -x "$NGINX" ]; then
  apt_install nginx \
    || { log "$NGINX is missing and cannot be installed (needs apt-get as root or with sudo): the nginx test will be skipped, or fail with CI=true"; exit 1; }
  [ -x "$NGINX" ] || { log "the nginx package did not provide $NGINX"; exit 1; }
fi
# The deployment's configuration hashes on a key ('hash ... consistent') and maps the Upgrade
# header: both modules are built into Debian's nginx; 'nginx -V' lists what was left out.
if "$NGINX" -V 2>&1 | grep -Eq -- '--without-http_(upstream_hash|map)_module'; then
  log "this nginx was built without the upstream hash or map module"
  exit 1
fi
# 'nginx -v' prints "nginx version: nginx/1.22.1" to stderr.
log "$("$NGINX" -v 2>&1)"
