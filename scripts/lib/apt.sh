# Shared by the scripts that install Debian packages on demand (scripts/postgis.sh, gdal.sh,
# chromium.sh). Source it after defining log (the caller's prefixed message to stderr):
#
#   here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
#   log() { printf 'name: %s\n' "$*" >&2; }
#   . "$here/lib/apt.sh"
#
#   as_root CMD ARGS...       run CMD as root: directly when we are root, else with password-less
#                             sudo; status 1 (nothing run) when neither is possible
#   apt_install PACKAGE...    install Debian packages with apt-get, quietly (its output to stderr),
#                             updating the package lists once if the first attempt fails; status
#                             non-zero when apt-get is missing, we cannot be root, or it fails
#
# Nothing here exits or sets shell options: the caller decides (they all run with set -euo
# pipefail, and treat a failed apt_install as "not available here"; with CI=true that is an
# error, see the Makefile and scripts/with-postgis.sh).

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 1
  fi
}

apt_install() {
  command -v apt-get >/dev/null || return 1
  if declare -F log >/dev/null; then log "installing $* with apt-get"; else printf 'installing %s with apt-get\n' "$*" >&2; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 \
    || { as_root apt-get update -qq >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2; }
}
