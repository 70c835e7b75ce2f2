#!/usr/bin/env bash
# Peak memory of one flatten of a large image, against the bare
# `docker export | docker import` pipeline on the same engine.
#
#   bench/rss.sh [SIZE_MIB]     (default 1024)
#
# Builds an image of SIZE_MIB of incompressible data in 16 files (offline, by
# `docker import`), flattens it once with the release binary under
# /usr/bin/time -v, times the bare pipeline once, prints both, and removes
# everything it made.
set -euo pipefail
size_mib=${1:-1024}
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (Debian package: time)" >&2; exit 1; }
cargo build --release --locked --quiet
bin=target/release/docker-flatten

work=$(mktemp -d)
tag="dflt-bench-rss-$$"
cleanup() {
  # The container first: an image a container uses is only untagged.
  [[ -n "${cid:-}" ]] && docker rm -fv "$cid" >/dev/null 2>&1 || true
  docker rmi -f "$tag:src" "$tag:flat" "$tag:manual" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/root/data"
per_file=$((size_mib / 16))
for i in $(seq 1 16); do head -c "${per_file}M" /dev/urandom >"$work/root/data/f$i"; done
tar -C "$work/root" -cf "$work/image.tar" .
docker import "$work/image.tar" "$tag:src" >/dev/null
rm -rf "$work/root" "$work/image.tar"

echo "engine: $(docker version --format '{{.Server.Version}}') ($(docker info --format '{{.Driver}}')), image: $size_mib MiB in 16 files"
/usr/bin/time -v "$bin" flatten --quiet "$tag:src" "$tag:flat" 2>"$work/time" >/dev/null
grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$work/time" | sed 's/^\s*/docker-flatten: /'
start=$(date +%s%N)
cid=$(docker create "$tag:src" /none)
docker export "$cid" | docker import - "$tag:manual" >/dev/null
end=$(date +%s%N)
ms=$(((end - start) / 1000000))
printf "bare export | import: %d.%03d s\n" $((ms / 1000)) $((ms % 1000))
