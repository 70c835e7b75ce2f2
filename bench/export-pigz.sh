#!/usr/bin/env bash
# The manual way to get a flattened image into a file, as bench/run.sh times
# it beside `docker flatten -o`: create a container (never started), export
# it through pigz -1 (parallel gzip, the plugin's level) into FILE, remove
# the container.
#
#   bench/export-pigz.sh IMAGE FILE [LABEL=VALUE]
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 IMAGE FILE [LABEL=VALUE]" >&2; exit 2; }
image=$1 file=$2 label=${3:-}
cid=$(docker create ${label:+--label "$label"} "$image" /none)
trap 'docker rm -fv "$cid" >/dev/null' EXIT
docker export "$cid" | pigz -1 >"$file"
