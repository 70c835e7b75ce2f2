#!/usr/bin/env bash
# The engine's export alone, the first stage of a default flatten, as
# bench/run.sh times it: create a container (never started), export it into
# /dev/null, remove the container.
#
#   bench/export-null.sh IMAGE [LABEL=VALUE]
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 IMAGE [LABEL=VALUE]" >&2; exit 2; }
image=$1 label=${2:-}
cid=$(docker create ${label:+--label "$label"} "$image" /none)
trap 'docker rm -fv "$cid" >/dev/null' EXIT
docker export "$cid" >/dev/null
