#!/usr/bin/env bash
# The manual pipeline docker-flatten replaces, as bench/run.sh times it:
# create a container (never started), export it into an image import, remove
# the container.
#
#   bench/bare-pipeline.sh IMAGE TAG [LABEL=VALUE]
#
# The optional label goes on the container, so that an interrupted run's
# container can be found and removed.
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 IMAGE TAG [LABEL=VALUE]" >&2; exit 2; }
image=$1 tag=$2 label=${3:-}
cid=$(docker create ${label:+--label "$label"} "$image" /none)
trap 'docker rm -fv "$cid" >/dev/null' EXIT
docker export "$cid" | docker import - "$tag" >/dev/null
