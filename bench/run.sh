#!/usr/bin/env bash
# Benchmark docker flatten against the bare `docker export | docker import`
# pipeline (and docker-squash when it is there) on the engine the docker CLI
# talks to. Run bench/run.sh --help for the options; bench/README.md explains.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/run.sh [OPTIONS]

Builds multi-layer benchmark images offline (cached as dflt-bench-<MiB>:src),
then, per size, times in alternating rounds with hyperfine:
  flatten   docker flatten IMAGE TAG (this checkout's release build)
  bare      docker create + docker export | docker import + docker rm
  squash    docker-squash -t TAG IMAGE (if installed, see --with-squash)
  zstd      docker flatten --compression zstd (containerd store, if supported)
  exact     docker flatten --exact (if supported)
  keep      docker flatten --keep-layers 4: the bottom four layers (about 85% of
            the bytes) kept, the three above merged (if supported)
  keepbase  docker flatten --keep-base BASE, BASE (dflt-bench-<MiB>:base) an image
            of those four layers, loaded beside the source (if supported)
  verify    docker flatten --verify: the result read back and compared with the
            source's layers before TAG moves (if supported)
  exactv    docker flatten --exact --verify (if both are supported)
  output    docker flatten -o FILE IMAGE TAG (if supported), FILE in the
            results dir's disk (--out), beside:
  pigz      docker create + docker export | pigz -1 > FILE + docker rm
  save      docker save -o FILE IMAGE (the source, for scale)
  input     docker flatten -i IN -o FILE, IN the source's `docker save`
            archive (if supported; no engine is asked anything), beside:
  skopeo    skopeo copy docker-archive:IN oci-archive:FILE (if installed),
            the same one pass over the same archive by a real tool
and one run of the plugin under /usr/bin/time -v for its peak RSS (and one
with -o, one with --exact and one with -i, for theirs).
Prints a markdown table; hyperfine JSON and logs go to the results dir, and
runs.tsv there has every run with the load average before and after it.
Honours DOCKER_HOST (e.g. DOCKER_HOST=unix:///run/dflt-c8d/docker.sock).

Options:
  --sizes LIST     image sizes in MiB, comma-separated (default 100,1024,4096)
  --runs N         timed runs of each command per size (default 3; 0: none,
                   only the peak-RSS runs)
  --only LIST      time only these commands, comma-separated (e.g.
                   flatten,exact,keep,keepbase); default: all that apply
  --rss LIST       peak-RSS runs, comma-separated: flatten, exact, output,
                   input, or none (default: all that apply)
  --prefix NAME    name images NAME-<MiB>:src, NAME-<MiB>:base and NAME-run-...
                   (default dflt-bench), e.g. to keep apart from another run
  --with-squash    install docker-squash (pip) into bench/.venv if missing
  --no-squash      do not time docker-squash even if it is installed
  --platforms      also time a flatten of a two-platform copy of each image
                   (containerd store; bench/mkindex.py makes it): N platforms
                   should cost about N single flattens
  --installed      time the docker-flatten plugin the docker CLI already has,
                   instead of building this checkout (./install.sh into a
                   private DOCKER_CONFIG; ~/.docker is left alone)
  --out DIR        results dir (default bench/results/<UTC time>-<store>)
  --settle N       seconds to let the engine settle after each run (default 10)
  --build-only     only build (or find cached) the source images
  --clean          also remove the cached source images at the end
  --clean-only     only remove the cached source images, then exit
  -h, --help       show this help
EOF
}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

bench_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname -- "$bench_dir")

sizes=100,1024,4096 runs=3 with_squash=false no_squash=false installed=false platforms=false
out='' build_only=false clean=false clean_only=false settle_seconds=10
only='' rss_kinds=flatten,exact,output,input prefix=dflt-bench
while [[ $# -gt 0 ]]; do
  case $1 in
    --sizes) [[ $# -ge 2 ]] || die "--sizes needs a value"; sizes=$2; shift ;;
    --sizes=*) sizes=${1#*=} ;;
    --runs) [[ $# -ge 2 ]] || die "--runs needs a value"; runs=$2; shift ;;
    --runs=*) runs=${1#*=} ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a value"; out=$2; shift ;;
    --out=*) out=${1#*=} ;;
    --settle) [[ $# -ge 2 ]] || die "--settle needs a value"; settle_seconds=$2; shift ;;
    --settle=*) settle_seconds=${1#*=} ;;
    --only) [[ $# -ge 2 ]] || die "--only needs a value"; only=$2; shift ;;
    --only=*) only=${1#*=} ;;
    --rss) [[ $# -ge 2 ]] || die "--rss needs a value"; rss_kinds=$2; shift ;;
    --rss=*) rss_kinds=${1#*=} ;;
    --prefix) [[ $# -ge 2 ]] || die "--prefix needs a value"; prefix=$2; shift ;;
    --prefix=*) prefix=${1#*=} ;;
    --with-squash) with_squash=true ;;
    --no-squash) no_squash=true ;;
    --platforms) platforms=true ;;
    --installed) installed=true ;;
    --build-only) build_only=true ;;
    --clean) clean=true ;;
    --clean-only) clean_only=true ;;
    -h | --help) usage; exit 0 ;;
    *) log "unknown option: $1"; usage >&2; exit 2 ;;
  esac
  shift
done
[[ $sizes =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--sizes must be MiB numbers separated by commas, got '$sizes'"
[[ $runs =~ ^[0-9]+$ ]] || die "--runs must be a number, got '$runs'"
[[ -z $only || $only =~ ^[a-z0-9]+(,[a-z0-9]+)*$ ]] || die "--only must be command names separated by commas, got '$only'"
[[ $rss_kinds =~ ^(none|(flatten|exact|output|input)(,(flatten|exact|output|input))*)$ ]] ||
  die "--rss must be flatten, exact, output, input (comma-separated) or none, got '$rss_kinds'"
[[ $prefix =~ ^[a-z0-9]+([._-][a-z0-9]+)*$ ]] || die "--prefix must be a lowercase image name, got '$prefix'"
wants_rss() { [[ ,$rss_kinds, == *,$1,* ]]; }
[[ $settle_seconds =~ ^[0-9]+$ ]] || die "--settle must be whole seconds, got '$settle_seconds'"
IFS=, read -ra size_list <<<"$sizes"
for s in "${size_list[@]}"; do ((s >= 10)) || die "sizes must be at least 10 MiB, got $s"; done

# Labels: the recipe on cached source images, the run on everything else.
recipe_label=dflt.bench.recipe
run_id="$$-$(date +%s)"
run_label=dflt.bench.run=$run_id
src_tag() { printf '%s-%s:src' "$prefix" "$1"; }
base_tag() { printf '%s-%s:base' "$prefix" "$1"; }
out_repo() { printf '%s-run-%s-%s' "$prefix" "$run_id" "$1"; }
prefix_re=${prefix//./\\.}

for cmd in docker python3; do
  command -v "$cmd" >/dev/null || die "$cmd not found: install it or put it on PATH"
done
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
  die "cannot reach the docker engine (${DOCKER_HOST:-default context}): $(docker version 2>&1 | tail -n 1)"

# Only images this script tagged and labelled, so a foreign dflt-bench-* is kept.
remove_cached() {
  local ids
  ids=$(docker images --filter "label=$recipe_label" --format '{{.Repository}}:{{.Tag}}' |
    grep -E "^$prefix_re-[0-9]+:(src|base)\$" || true)
  if [[ -n $ids ]]; then
    # shellcheck disable=SC2086 # one tag a word
    docker rmi $ids >/dev/null && log "removed cached images: ${ids//$'\n'/ }"
  else
    log "no cached images to remove"
  fi
}
if $clean_only; then remove_cached; exit 0; fi

need_timing=true
if $build_only; then need_timing=false; fi
if $need_timing; then
  command -v hyperfine >/dev/null || die "hyperfine not found (Debian package: hyperfine)"
  [[ -x /usr/bin/time ]] || die "/usr/bin/time not found (Debian package: time)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dflt-bench.XXXXXX")
cleanup() {
  local rc=$? ids
  trap - EXIT INT TERM
  # Containers first: an image a container uses is only untagged.
  ids=$(docker ps -aq --filter "label=$run_label" 2>/dev/null || true)
  # shellcheck disable=SC2086
  [[ -z $ids ]] || docker rm -fv $ids >/dev/null 2>&1 || true
  ids=$(docker images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null |
    grep -E "^$prefix_re-run-$run_id-" || true)
  # shellcheck disable=SC2086
  [[ -z $ids ]] || docker rmi -f $ids >/dev/null 2>&1 || true
  if ((rc != 0)); then
    # What an interrupted docker flatten of our images may leave: its
    # container, and its new image before it was tagged (which inherits
    # the recipe label).
    for src_id in $(docker images -q --filter "label=$recipe_label" 2>/dev/null || true); do
      ids=$(docker ps -aq --filter label=com.docker-flatten.run --filter "ancestor=$src_id" 2>/dev/null || true)
      # shellcheck disable=SC2086
      [[ -z $ids ]] || docker rm -fv $ids >/dev/null 2>&1 || true
    done
    ids=$(docker images -q --filter dangling=true --filter "label=$recipe_label" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [[ -z $ids ]] || docker rmi $ids >/dev/null 2>&1 || true
  fi
  if $clean; then remove_cached || true; fi
  rm -rf -- "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the engine and the machine ---------------------------------------------
server=$(docker version --format '{{.Server.Version}}')
driver=$(docker info --format '{{.Driver}}')
driver_type=$(docker info --format '{{range .DriverStatus}}{{if eq (index . 0) "driver-type"}}{{index . 1}}{{end}}{{end}}')
if [[ $driver_type == io.containerd.snapshotter.v1 ]]; then store=containerd; else store=graphdriver; fi
endpoint=${DOCKER_HOST:-$(docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null || echo default)}
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
engine_line="Docker Engine $server, $store image store ($driver), $endpoint"
machine_line="$(nproc) CPUs (${cpu:-unknown}), $mem RAM, $(uname -sr)"
log "engine: $engine_line"
log "machine: $machine_line"

# --- source images ------------------------------------------------------------
recipe() { { cat "$bench_dir/mkimage.py"; echo "size=$1"; } | sha256sum | cut -c1-16; }

ensure_image() {
  local size=$1 tag want have base_have old free need
  tag=$(src_tag "$size")
  want=$(recipe "$size")
  have=$(docker image inspect --format "{{index .Config.Labels \"$recipe_label\"}}" "$tag" 2>/dev/null || true)
  base_have=$(docker image inspect --format "{{index .Config.Labels \"$recipe_label\"}}" "$(base_tag "$size")" 2>/dev/null || true)
  if [[ $have == "$want" && $base_have == "$want" ]]; then
    log "$tag: cached (recipe $want)"
  else
    old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    [[ -z $old || -n $have ]] ||
      die "$tag exists but bench/run.sh did not build it (no $recipe_label label): remove or retag it"
    # Layer tars in $work, then the engine's copy: about size + 64 MiB each.
    need=$((size + 128))
    free=$(df -Pm -- "$work" | awk 'NR == 2 { print $4 }')
    ((free > need)) || die "building $tag needs ~$need MiB in $work, $free MiB free (set TMPDIR)"
    log "$tag: building ($size MiB, recipe $want)"
    python3 "$bench_dir/mkimage.py" --size-mib "$size" --tag "$tag" --base-tag "$(base_tag "$size")" \
      --work "$work/layers-$size" --label "$recipe_label=$want" | docker load >/dev/null ||
      die "building $tag failed"
    rm -rf -- "$work/layers-$size"
    have=$(docker image inspect --format "{{index .Config.Labels \"$recipe_label\"}}" "$tag")
    [[ $have == "$want" ]] || die "$tag was loaded but has recipe '$have', not $want"
    # Our older build, now untagged.
    if [[ -n $old && $old != "$(docker image inspect --format '{{.Id}}' "$tag")" ]]; then
      docker rmi "$old" >/dev/null 2>&1 || true
    fi
  fi
  # One container created and removed, so that the engine has the image
  # unpacked before the first timed run (the containerd store unpacks lazily).
  docker rm -v "$(docker create --label "$run_label" "$tag" /none)" >/dev/null
}

# The same image as two platforms sharing its layers (see bench/mkindex.py).
ensure_index() {
  local src index
  src=$(src_tag "$1")
  index=${src}-2p
  if [[ $(docker image inspect --format "{{index .Config.Labels \"$recipe_label\"}}" "$index" 2>/dev/null) == \
    "$(recipe "$1")" ]]; then
    log "$index: cached"
    return
  fi
  log "$index: building from $src"
  docker save "$src" | python3 "$bench_dir/mkindex.py" --tag "$index" --platforms 2 |
    docker load >/dev/null || die "building $index failed"
}

for size in "${size_list[@]}"; do ensure_image "$size"; done
if $platforms; then
  [[ $store == containerd ]] || die "--platforms needs the containerd store (a graphdriver image has one platform)"
  for size in "${size_list[@]}"; do ensure_index "$size"; done
fi
if $build_only; then
  docker images --filter "label=$recipe_label" --format 'table {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}' >&2
  exit 0
fi

# --- the contenders -----------------------------------------------------------
plugin_bin=''
if $installed; then
  plugin_bin=$(docker info --format '{{range .ClientInfo.Plugins}}{{if eq .Name "flatten"}}{{.Path}}{{end}}{{end}}' 2>/dev/null || true)
  [[ -x $plugin_bin ]] || die "--installed: the docker CLI has no flatten plugin (run ./install.sh)"
else
  # A private DOCKER_CONFIG that shares the user's config.json and contexts
  # (so contexts still resolve) but has its own cli-plugins: the benchmark
  # times this checkout, and the user's installed plugin stays as it is.
  user_cfg=${DOCKER_CONFIG:-$HOME/.docker}
  mkdir -p "$work/docker-config/cli-plugins"
  for f in config.json contexts; do
    [[ ! -e $user_cfg/$f ]] || ln -s "$user_cfg/$f" "$work/docker-config/$f"
  done
  export DOCKER_CONFIG=$work/docker-config
  log "building the release binary: ./install.sh (DOCKER_CONFIG=$DOCKER_CONFIG)"
  "$repo_dir/install.sh" >"$work/install.log" 2>&1 || {
    tail -n 20 "$work/install.log" >&2
    die "./install.sh failed"
  }
  plugin_bin=$DOCKER_CONFIG/cli-plugins/docker-flatten
fi
log "plugin: $plugin_bin ($("$plugin_bin" docker-cli-plugin-metadata 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Version", "?"))' 2>/dev/null || echo '?'))"

squash=''
venv=$bench_dir/.venv
if ! $no_squash; then
  if [[ -x $venv/bin/docker-squash ]]; then
    squash=$venv/bin/docker-squash
  elif command -v docker-squash >/dev/null; then
    squash=$(command -v docker-squash)
  elif $with_squash; then
    log "installing docker-squash into $venv"
    { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet docker-squash; } >"$work/pip.log" 2>&1 || {
      tail -n 20 "$work/pip.log" >&2
      die "pip install docker-squash failed"
    }
    squash=$venv/bin/docker-squash
  else
    log "docker-squash not installed: not timed (--with-squash installs it)"
  fi
fi
[[ -z $squash ]] || log "docker-squash: $squash ($("$squash" --version 2>&1 | tail -n 1))"

zstd=false
if [[ $store == containerd ]] && docker flatten --help 2>/dev/null | grep -q -- '--compression'; then
  zstd=true
fi
output=false
if docker flatten --help 2>/dev/null | grep -q -- '--output'; then
  if command -v pigz >/dev/null; then
    output=true
  else
    log "pigz not installed (Debian package pigz): --output not timed"
  fi
fi

merge=false
if docker flatten --help 2>/dev/null | grep -q -- '--exact'; then
  merge=true
fi
verify=false
if docker flatten --help 2>/dev/null | grep -q -- '--verify'; then
  verify=true
fi
input=false
if docker flatten --help 2>/dev/null | grep -q -- '--input'; then
  if command -v skopeo >/dev/null; then
    input=true
  else
    log "skopeo not installed (Debian package skopeo): -i not timed"
  fi
fi

# --- timing -------------------------------------------------------------------
[[ -n $out ]] || out=$bench_dir/results/$(date -u +%Y%m%d-%H%M%S)-$store
mkdir -p "$out/json" "$out/logs"
out=$(cd -- "$out" && pwd)
{
  echo "engine: $engine_line"
  echo "machine: $machine_line"
  echo "sizes: $sizes; runs: $runs"
} >"$out/env.txt"

q() { printf '%q' "$1"; }

# Removing an image frees its files in the background (the containerd store
# collects garbage asynchronously), and each run leaves dirty pages behind:
# let both finish so that no run pays for the one before it.
settle() {
  sync
  sleep "$settle_seconds"
  sync
}

for size in "${size_list[@]}"; do
  src=$(src_tag "$size")
  repo=$(out_repo "$size")
  names=(flatten bare)
  declare -A cmd=(
    [flatten]="docker flatten -q $(q "$src") $(q "$repo:flatten")"
    [bare]="$(q "$bench_dir/bare-pipeline.sh") $(q "$src") $(q "$repo:bare") $(q "$run_label")"
  )
  if [[ -n $squash ]]; then
    names+=(squash)
    cmd[squash]="$(q "$squash") -t $(q "$repo:squash") $(q "$src")"
  fi
  if $zstd; then
    names+=(zstd)
    cmd[zstd]="docker flatten -q --compression zstd $(q "$src") $(q "$repo:zstd")"
  fi
  if $merge; then
    names+=(exact keep keepbase)
    cmd[exact]="docker flatten -q --exact $(q "$src") $(q "$repo:exact")"
    cmd[keep]="docker flatten -q --keep-layers 4 $(q "$src") $(q "$repo:keep")"
    cmd[keepbase]="docker flatten -q --keep-base $(q "$(base_tag "$size")") $(q "$src") $(q "$repo:keepbase")"
  fi
  if $platforms; then
    names+=(platforms2)
    cmd[platforms2]="docker flatten -q $(q "$src-2p") $(q "$repo:platforms2")"
  fi
  if $verify; then
    names+=(verify)
    cmd[verify]="docker flatten -q --verify $(q "$src") $(q "$repo:verify")"
    if $merge; then
      names+=(exactv)
      cmd[exactv]="docker flatten -q --exact --verify $(q "$src") $(q "$repo:exactv")"
    fi
  fi
  # Archives go to the results dir: a real disk, as a user's file would.
  archive() { q "$out/$size-$1.tar"; }
  if $output; then
    names+=(output pigz save)
    cmd[output]="docker flatten -q -o $(archive output) $(q "$src") $(q "$repo:output")"
    cmd[pigz]="$(q "$bench_dir/export-pigz.sh") $(q "$src") $(archive pigz) $(q "$run_label")"
    cmd[save]="docker save -o $(archive save) $(q "$src")"
  fi
  # The archive -i and skopeo read: the source as docker save writes it.
  saved=$work/$size-in.tar
  if $input; then
    [[ -f $saved ]] || docker save -o "$saved" "$src"
    names+=(input skopeo)
    cmd[input]="docker flatten -q -i $(q "$saved") -o $(archive input)"
    cmd[skopeo]="skopeo copy -q docker-archive:$(q "$saved") oci-archive:$(archive skopeo)"
  fi
  if [[ -n $only ]]; then
    wanted=()
    for name in "${names[@]}"; do [[ ,$only, != *,$name,* ]] || wanted+=("$name"); done
    names=("${wanted[@]}")
  fi
  for name in "${names[@]}"; do echo "command $size $name: ${cmd[$name]}"; done >>"$out/env.txt"
  declare -A failed=()
  settle
  for ((r = 1; r <= runs; r++)); do
    # Alternate the commands, starting each round one further along, so that
    # none of them is always first after the previous one's cleanup.
    n=${#names[@]}
    for ((i = 0; i < n; i++)); do
      name=${names[$(((i + r - 1) % n))]}
      [[ -z ${failed[$name]:-} ]] || continue
      tag=$repo:$name
      json=$out/json/$size-$name-$r.json
      logf=$out/logs/$size-$name-$r.log
      status=0
      load_before=$(cut -d' ' -f1-3 /proc/loadavg)
      hyperfine --runs 1 --style none --shell bash -n "$name" \
        --prepare "docker rmi -f $(q "$tag") >/dev/null 2>&1; rm -f $(archive "$name") || true" \
        --output "$logf" --export-json "$json" "${cmd[$name]} 2>&1" >>"$logf.hyperfine" 2>&1 || status=$?
      # Bash runs no INT trap when its child exits normally after Ctrl-C.
      if ((status > 128)) || grep -qE 'exit code: (130|143)\.' "$logf.hyperfine"; then
        log "interrupted"
        exit 130
      elif ((status == 0)); then
        t=$(python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))["results"][0]["median"])' "$json")
        load_after=$(cut -d' ' -f1-3 /proc/loadavg)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$r" "$name" "$t" "$load_before" "$load_after" \
          "$(date -u +%H:%M:%S)" >>"$out/runs.tsv"
        log "$size MiB, round $r/$runs: $name ${t}s (load before: $load_before, after: $load_after)"
        [[ ! -f $out/$size-$name.tar ]] || stat -c %s "$out/$size-$name.tar" >"$out/json/$size-$name.bytes"
      else
        failed[$name]=1
        rm -f -- "$json"
        log "$size MiB, round $r/$runs: $name FAILED, not timed further; its output:"
        tail -n 15 "$logf" "$logf.hyperfine" >&2 || true
      fi
      docker rmi -f "$tag" >/dev/null 2>&1 || true
      rm -f -- "$out/$size-$name.tar"
      settle
    done
  done
  # Peak memory of the plugin: the binary itself, without the docker CLI.
  if wants_rss flatten; then
    status=0
    /usr/bin/time -v -o "$out/logs/$size-rss.time" "$plugin_bin" flatten -q "$src" "$repo:rss" \
      >"$out/logs/$size-rss.log" 2>&1 || status=$?
    if ((status == 130 || status == 143)); then
      log "interrupted"
      exit 130
    elif ((status == 0)); then
      rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$out/logs/$size-rss.time")
      echo "$rss" >"$out/json/$size-rss.kb"
      log "$size MiB: flatten peak RSS $((rss / 1024)) MiB"
    else
      log "$size MiB: the peak-RSS run failed:"
      tail -n 15 "$out/logs/$size-rss.log" >&2 || true
    fi
    docker rmi -f "$repo:rss" >/dev/null 2>&1 || true
  fi
  if $merge && wants_rss exact; then
    settle
    status=0
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    /usr/bin/time -v -o "$out/logs/$size-rss-exact.time" "$plugin_bin" flatten -q --exact "$src" "$repo:rss" \
      >"$out/logs/$size-rss-exact.log" 2>&1 || status=$?
    if ((status == 0)); then
      rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$out/logs/$size-rss-exact.time")
      echo "$rss" >"$out/json/$size-rss-exact.kb"
      wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$out/logs/$size-rss-exact.time")
      log "$size MiB: flatten --exact peak RSS $((rss / 1024)) MiB, wall $wall (load before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg))"
    else
      log "$size MiB: the --exact peak-RSS run failed:"
      tail -n 15 "$out/logs/$size-rss-exact.log" >&2 || true
    fi
    docker rmi -f "$repo:rss" >/dev/null 2>&1 || true
  fi
  if $output && wants_rss output; then
    status=0
    /usr/bin/time -v -o "$out/logs/$size-rss-output.time" "$plugin_bin" flatten -q \
      -o "$out/$size-rss.tar" "$src" "$repo:rss" >"$out/logs/$size-rss-output.log" 2>&1 || status=$?
    rm -f -- "$out/$size-rss.tar"
    if ((status == 130 || status == 143)); then
      log "interrupted"
      exit 130
    elif ((status == 0)); then
      rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$out/logs/$size-rss-output.time")
      echo "$rss" >"$out/json/$size-rss-output.kb"
      log "$size MiB: flatten -o peak RSS $((rss / 1024)) MiB"
    fi
  fi
  if $input && wants_rss input; then
    settle
    status=0
    /usr/bin/time -v -o "$out/logs/$size-rss-input.time" env DOCKER_HOST=unix:///nonexistent \
      "$plugin_bin" flatten -q -i "$saved" -o "$out/$size-rss.tar" >"$out/logs/$size-rss-input.log" 2>&1 || status=$?
    rm -f -- "$out/$size-rss.tar"
    if ((status == 130 || status == 143)); then
      log "interrupted"
      exit 130
    elif ((status == 0)); then
      rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$out/logs/$size-rss-input.time")
      echo "$rss" >"$out/json/$size-rss-input.kb"
      log "$size MiB: flatten -i peak RSS $((rss / 1024)) MiB"
    fi
  fi
  rm -f -- "$saved"
  unset cmd failed
done

# --- the table ----------------------------------------------------------------
layers() { docker image inspect --format '{{len .RootFS.Layers}}' "$(src_tag "$1")"; }
size_info=$(for s in "${size_list[@]}"; do printf '%s:%s ' "$s" "$(layers "$s")"; done)
python3 - "$out" "$engine_line" "$machine_line" "$runs" "$size_info" >"$out/results.md" <<'EOF'
import glob, json, os, statistics, sys

out, engine, machine, runs, size_info = sys.argv[1:]
sizes = [tuple(x.split(":")) for x in size_info.split()]
names = ["flatten", "bare", "squash", "zstd", "exact", "keep", "keepbase", "verify", "exactv",
         "output", "pigz", "save", "platforms2", "input", "skopeo"]
titles = {"flatten": "docker flatten", "bare": "export \\| import",
          "squash": "docker-squash", "zstd": "flatten zstd",
          "exact": "flatten --exact", "keep": "flatten --keep-layers 4",
          "keepbase": "flatten --keep-base",
          "verify": "flatten --verify", "exactv": "flatten --exact --verify",
          "output": "flatten -o FILE", "pigz": "export \\| pigz -1", "save": "docker save",
          "platforms2": "flatten, 2 platforms",
          "input": "flatten -i IN -o FILE", "skopeo": "skopeo copy IN FILE"}

def times(size, name):
    ts = []
    for f in glob.glob(f"{out}/json/{size}-{name}-*.json"):
        ts += json.load(open(f))["results"][0]["times"]
    return ts

med = {(s, n): statistics.median(t) for s, _ in sizes for n in names if (t := times(s, n))}
shown = [n for n in names if any((s, n) in med for s, _ in sizes)]

def cell(s, n):
    if (s, n) not in med:
        return "–"
    t = times(s, n)
    spread = f" ({min(t):.1f}–{max(t):.1f})" if len(t) > 1 else ""
    return f"{med[s, n]:.2f} s{spread}"

def ratio(s, a, b):
    return f"{med[s, a] / med[s, b]:.2f}" if (s, a) in med and (s, b) in med else "–"

print(f"Engine: {engine}  ")
print(f"Machine: {machine}  ")
print(f"Median of {runs} run(s) each, runs alternating (min–max in brackets).")
print()
head = ["image", "layers"] + [titles[n] for n in shown] + (["flatten / bare"] if "bare" in shown else [])
if "squash" in shown:
    head.append("squash / flatten")
if "zstd" in shown:
    head.append("zstd / flatten")
for n in ("exact", "keep", "keepbase"):
    if n in shown:
        head.append(f"{n} / flatten")
if "verify" in shown:
    head.append("verify / flatten")
if "exactv" in shown:
    head.append("exact --verify / exact")
if "output" in shown:
    head.append("-o / pigz")
if "platforms2" in shown:
    head.append("2 platforms / flatten")
if "input" in shown:
    head.append("-i / skopeo")
flatten_rss = any(os.path.exists(f"{out}/json/{s}-rss.kb") for s, _ in sizes)
if flatten_rss:
    head.append("flatten peak RSS")
if "output" in shown:
    head.append("-o peak RSS")
exact_rss = any(os.path.exists(f"{out}/json/{s}-rss-exact.kb") for s, _ in sizes)
if exact_rss:
    head.append("--exact peak RSS")
input_rss = any(os.path.exists(f"{out}/json/{s}-rss-input.kb") for s, _ in sizes)
if input_rss:
    head.append("-i peak RSS")
print("| " + " | ".join(head) + " |")
print("|" + "|".join(" --- " for _ in head) + "|")
for s, nlayers in sizes:
    mib = int(s)
    label = f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib} MiB"
    row = [label, nlayers] + [cell(s, n) for n in shown] + ([ratio(s, "flatten", "bare")] if "bare" in shown else [])
    if "squash" in shown:
        row.append(ratio(s, "squash", "flatten"))
    if "zstd" in shown:
        row.append(ratio(s, "zstd", "flatten"))
    for n in ("exact", "keep", "keepbase"):
        if n in shown:
            row.append(ratio(s, n, "flatten"))
    if "verify" in shown:
        row.append(ratio(s, "verify", "flatten"))
    if "exactv" in shown:
        row.append(ratio(s, "exactv", "exact"))
    if "output" in shown:
        row.append(ratio(s, "output", "pigz"))
    if "platforms2" in shown:
        row.append(ratio(s, "platforms2", "flatten"))
    if "input" in shown:
        row.append(ratio(s, "input", "skopeo"))
    kinds = (["rss"] if flatten_rss else []) + (["rss-output"] if "output" in shown else []) + (["rss-exact"] if exact_rss else []) + (["rss-input"] if input_rss else [])
    for kind in kinds:
        rss = f"{out}/json/{s}-{kind}.kb"
        row.append(f"{int(open(rss).read()) / 1024:.1f} MiB" if os.path.exists(rss) else "–")
    print("| " + " | ".join(row) + " |")
files = [(s, n) for s, _ in sizes for n in ["output", "pigz", "save", "input", "skopeo"]
         if os.path.exists(f"{out}/json/{s}-{n}.bytes")]
if files:
    print()
    print("Files written: " + "; ".join(
        f"{titles[n]} {int(open(f'{out}/json/{s}-{n}.bytes').read()) / 2**20:.1f} MiB ({s} MiB image)"
        for s, n in files))
EOF
echo
cat "$out/results.md"
echo
log "results: $out"
