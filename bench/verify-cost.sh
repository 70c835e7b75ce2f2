#!/usr/bin/env bash
# The cost of --verify on the cached 1 GiB bench image (build it first:
# bench/run.sh --build-only --sizes 1024): one run of each of docker flatten,
# --verify, --exact and --exact --verify per round, alternating, under
# /usr/bin/time, on the engine DOCKER_HOST names. Uses this checkout's
# release build (cargo build --release) unless DFLT_BIN names another.
set -u
bin=${DFLT_BIN:-$(dirname "$0")/../target/release/docker-flatten}
src=${DFLT_SRC:-dflt-bench-1024:src}
rounds=${1:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for ((round = 1; round <= rounds; round++)); do
  for v in plain verify exact exactv; do
    case $v in
      plain) args=() ;;
      verify) args=(--verify) ;;
      exact) args=(--exact) ;;
      exactv) args=(--exact --verify) ;;
    esac
    tag=dflt-bench-verify:$v
    sync; sleep 10; sync
    /usr/bin/time -f "%e s wall, %M KiB peak RSS" -o "$work/time" \
      "$bin" flatten "${args[@]}" "$src" "$tag" >"$work/out" 2>&1
    rc=$?
    verified=$(sed -nE 's/^Verified .*, in ([0-9.]+s)$/verify \1/p' "$work/out")
    echo "round $round: flatten ${args[*]}: exit $rc, $(tail -n 1 "$work/time")${verified:+, $verified}"
    docker rmi -f "$tag" >/dev/null 2>&1
  done
done
