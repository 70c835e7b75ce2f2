#!/usr/bin/env bash
# Two release builds of docker flatten, OLD and NEW, timed in alternating
# rounds (the order flips each round) on the 1 GiB bench image
# (dflt-bench-1024:src, which bench/run.sh builds), in three modes: the
# default, --exact and -o FILE. One line per run: round, mode, build,
# seconds, the 1-minute load average before it. On the engine the docker
# CLI talks to (DOCKER_HOST).
#
#   bench/compare.sh OLD-BINARY NEW-BINARY [ROUNDS]   # default 3 rounds
#
# Compare medians per mode, or the per-round ratios new/old: on a noisy
# machine a run varies by ±10%, and only a ratio taken in one session says
# anything.
set -u
old=$1 new=$2 rounds=${3:-3}
img=dflt-bench-1024:src
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
docker image inspect "$img" >/dev/null || { echo "no $img: run bench/run.sh --sizes 1024 --runs 0 first" >&2; exit 1; }
printf 'round\tmode\tbuild\tseconds\tload\n'
for r in $(seq 1 "$rounds"); do
  for mode in default exact output; do
    order="old new"; ((r % 2 == 0)) && order="new old"
    for b in $order; do
      bin=$old; [[ $b == new ]] && bin=$new
      tag=dflt-compare-$b-$mode
      docker rmi -f "$tag" >/dev/null 2>&1
      sync; sleep 3
      case $mode in
        default) args=(flatten -q "$img" "$tag") ;;
        exact) args=(flatten -q --exact "$img" "$tag") ;;
        output) args=(flatten -q -o "$out/$b.tar" "$img" "$tag") ;;
      esac
      load=$(cut -d' ' -f1 /proc/loadavg)
      start=$(date +%s.%N)
      "$bin" "${args[@]}" >/dev/null || echo "FAILED: $b $mode" >&2
      end=$(date +%s.%N)
      printf '%s\t%s\t%s\t%.2f\t%s\n' "$r" "$mode" "$b" "$(echo "$end - $start" | bc)" "$load"
      docker rmi -f "$tag" >/dev/null 2>&1; rm -f "$out/$b.tar"
    done
  done
done
