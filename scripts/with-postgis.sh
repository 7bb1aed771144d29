#!/usr/bin/env bash
# Run a command with a throwaway PostGIS cluster, its URL in RALLYPOINT_TEST_POSTGIS_URL.
# With CI=true a missing PostGIS is a failure; elsewhere the PostGIS tests are skipped, loudly.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/rallypoint-pg.XXXXXX)
cleanup() { "$here/postgis.sh" down "$dir"; }
trap cleanup EXIT
if url=$("$here/postgis.sh" up "$dir"); then
  export RALLYPOINT_TEST_POSTGIS_URL=$url
elif [ "${CI:-}" = true ]; then
  echo "error: PostGIS could not be brought up, and CI must run the PostGIS tests" >&2
  exit 1
else
  echo "WARNING: no PostGIS here: the PostGIS half of the storage tests will be SKIPPED" >&2
fi
"$@"
