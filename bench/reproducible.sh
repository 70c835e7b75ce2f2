#!/usr/bin/env bash
# Measures docs/reproducible.md's table: one IMAGE (bench/mkimage.py, one
# archive loaded into every engine), flattened twice per engine and mode
# to an archive (`-o`), gzip; prints each archive's SHA-256, and the
# result's config and layer digests from `--format json`.
#
#   bench/reproducible.sh [--size-mib 100] [ENGINE_HOST…]
#
# Without hosts: the three engines of the test machine (docs/engines.md).
# Needs docker with the plugin installed (or DOCKER_CONFIG naming a
# config dir whose cli-plugins holds it), python3, sha256sum. Removes
# the image it loaded from every engine.
set -euo pipefail
size=100
if [[ ${1:-} == --size-mib ]]; then size=$2; shift 2; fi
hosts=("$@")
if ((${#hosts[@]} == 0)); then
  hosts=(unix:///var/run/docker.sock unix:///run/dflt-c8d/docker.sock unix:///run/dflt-c8d-sid/docker.sock)
fi
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tag=dflt-repro-$size:src
python3 "$here/mkimage.py" --size-mib "$size" --tag "$tag" --work "$work/layers" >"$work/image.tar" 2>/dev/null
printf '%-40s %-8s %-3s %-16s %-16s %-16s %s\n' engine mode run archive config layer_diff_id layer_digest
for host in "${hosts[@]}"; do
  docker -H "$host" load -q -i "$work/image.tar" >/dev/null
  version=$(docker -H "$host" version --format '{{.Server.Version}}')
  for mode in default exact; do
    args=(); [[ $mode == exact ]] && args=(--exact)
    for run in 1 2; do
      out="$work/$mode-$run.tar"
      doc=$(docker -H "$host" flatten "${args[@]}" --format json -o "$out" "$tag" dflt-repro:flat 2>/dev/null)
      sum=$(sha256sum "$out" | cut -c1-16)
      read -r config diff blob < <(python3 -c 'import json,sys; r=json.load(sys.stdin)["platforms"][0]["result"]; print(*(r[k][7:23] for k in ("config","layer_diff_id","layer_digest")))' <<<"$doc")
      printf '%-40s %-8s %-3s %-16s %-16s %-16s %s\n' "$version $host" "$mode" "$run" "$sum" "$config" "$diff" "$blob"
      rm -f "$out"
    done
  done
  docker -H "$host" rmi "$tag" >/dev/null
done
