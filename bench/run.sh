#!/usr/bin/env bash
# Benchmark docker flatten against the bare `docker export | docker import`
# pipeline (and docker-squash when it is there) on the engine the docker CLI
# talks to. Run bench/run.sh --help for the options; bench/README.md explains.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/run.sh [OPTIONS]

Builds multi-layer benchmark images offline (cached as dflt-bench-<MiB>:src,
or dflt-bench-ai-<MiB>:src with --shape ai), then, per size, times in
alternating rounds with hyperfine:
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
  save      docker save -o FILE IMAGE (the source: the first stage of --exact
            and --keep-base, and for scale)
  input     docker flatten -i IN -o FILE, IN the source's `docker save`
            archive (if supported; no engine is asked anything), beside:
  skopeo    skopeo copy docker-archive:IN oci-archive:FILE (if installed),
            the same one pass over the same archive by a real tool
the engine's floors: a docker load -i FILE of the finished result, FILE
written once (untimed) by a docker flatten and a docker save of its TAG:
  floor     of the default mode's result (one layer)
  floorzstd of the --compression zstd result (containerd store)
  floorkeep of the --keep-base result (BASE's layers are already there)
and the stages of a flatten, each alone (the "stages" tables):
  export    docker create + docker export > /dev/null + docker rm
  merge     docker flatten -i IN -o FILE --compression none: the client's
            read and merge of the saved layers, no engine (if supported)
  mergegzip the same with gzip (the default): compression = the difference
            (input, the same command, stands in for it)
  mergezstd the same with zstd (containerd store)
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
  --rss LIST       peak-RSS runs, comma-separated: flatten, exact, keep,
                   keepbase, output, input, or none (default: flatten, exact,
                   output, input)
  --watch-tmp      run the peak-RSS runs with TMPDIR a fresh dir in the results
                   dir and sample the temporary space they use there (named
                   and unnamed files, every 0.5 s: bench/tmpwatch.py); the
                   table puts its peak beside the image's largest layer
  --shape NAME     default: the 7-layer image of bench/mkimage.py; ai: the
                   AI/ML-shaped image of bench/mkai.py (a tree of small files,
                   three large weight files, one replaced), cached as
                   PREFIX-ai-<MiB>:src and :base
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
only='' rss_kinds=flatten,exact,output,input prefix=dflt-bench shape=default watch_tmp=false
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
    --shape) [[ $# -ge 2 ]] || die "--shape needs a value"; shape=$2; shift ;;
    --shape=*) shape=${1#*=} ;;
    --watch-tmp) watch_tmp=true ;;
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
rss_re='(flatten|exact|keep|keepbase|output|input)'
[[ $rss_kinds =~ ^(none|$rss_re(,$rss_re)*)$ ]] ||
  die "--rss must be flatten, exact, keep, keepbase, output, input (comma-separated) or none, got '$rss_kinds'"
case $shape in
  default) generator=$bench_dir/mkimage.py shape_infix='' ;;
  ai) generator=$bench_dir/mkai.py shape_infix=ai- ;;
  *) die "--shape must be default or ai, got '$shape'" ;;
esac
[[ $prefix =~ ^[a-z0-9]+([._-][a-z0-9]+)*$ ]] || die "--prefix must be a lowercase image name, got '$prefix'"
wants_rss() { [[ ,$rss_kinds, == *,$1,* ]]; }
[[ $settle_seconds =~ ^[0-9]+$ ]] || die "--settle must be whole seconds, got '$settle_seconds'"
IFS=, read -ra size_list <<<"$sizes"
for s in "${size_list[@]}"; do ((s >= 10)) || die "sizes must be at least 10 MiB, got $s"; done

# Labels: the recipe on cached source images, the run on everything else.
recipe_label=dflt.bench.recipe
run_id="$$-$(date +%s)"
run_label=dflt.bench.run=$run_id
src_tag() { printf '%s-%s%s:src' "$prefix" "$shape_infix" "$1"; }
base_tag() { printf '%s-%s%s:base' "$prefix" "$shape_infix" "$1"; }
out_repo() { printf '%s-run-%s-%s' "$prefix" "$run_id" "$1"; }
prefix_re=${prefix//./\\.}

for cmd in docker python3; do
  command -v "$cmd" >/dev/null || die "$cmd not found: install it or put it on PATH"
done
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
  die "cannot reach the docker engine (${DOCKER_HOST:-default context}): $(docker version 2>&1 | tail -n 1)"

# Only images this script tagged and labelled, so a foreign dflt-bench-* is
# kept, and only those of this --shape (--shape ai --clean keeps the 7-layer ones).
remove_cached() {
  local ids
  ids=$(docker images --filter "label=$recipe_label" --format '{{.Repository}}:{{.Tag}}' |
    grep -E "^$prefix_re-${shape_infix}[0-9]+:(src|base)\$" || true)
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
  # rss_run's background jobs, by their ids, before their containers go.
  [[ -z ${bg_group:-} ]] || kill -TERM -- "-$bg_group" 2>/dev/null || true
  [[ -z ${bg_pid:-} ]] || kill "$bg_pid" 2>/dev/null || true
  [[ -z ${tmp_watched:-} ]] || rm -rf -- "$tmp_watched"
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
# The default shape's hash is what it always was (mkimage.py and the size), so
# images built before --shape stay cached.
# mkai.py imports mkimage.py's command line and file walk: its recipe is both.
recipe() { { cat "$generator"; [[ $generator == */mkimage.py ]] || cat "$bench_dir/mkimage.py"; echo "size=$1"; } |
  sha256sum | cut -c1-16; }

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
    # Layer tars in $work, then the engine's copy: about size + 64 MiB each
    # (mkai.py holds one layer at a time: at most a third of the size).
    need=$((size + 128))
    [[ $shape != ai ]] || need=$((size / 3 + 128))
    free=$(df -Pm -- "$work" | awk 'NR == 2 { print $4 }')
    ((free > need)) || die "building $tag needs ~$need MiB in $work, $free MiB free (set TMPDIR)"
    log "$tag: building ($size MiB, recipe $want)"
    [[ $shape != ai ]] ||
      log "the engine needs about 2x $size MiB free for it on the containerd store (content + snapshot)"
    python3 "$generator" --size-mib "$size" --tag "$tag" --base-tag "$(base_tag "$size")" \
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
input=false has_input=false
if docker flatten --help 2>/dev/null | grep -q -- '--input'; then
  has_input=true
  if command -v skopeo >/dev/null; then
    input=true
  else
    log "skopeo not installed (Debian package skopeo): -i beside skopeo not timed"
  fi
fi

# --- timing -------------------------------------------------------------------
[[ -n $out ]] || out=$bench_dir/results/$(date -u +%Y%m%d-%H%M%S)-$store
mkdir -p "$out/json" "$out/logs"
out=$(cd -- "$out" && pwd)
{
  echo "engine: $engine_line"
  echo "machine: $machine_line"
  echo "sizes: $sizes; runs: $runs; shape: $shape ($(basename "$generator"))"
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

# One run of the plugin under /usr/bin/time -v: rss_run KIND WHAT COMMAND...;
# its peak RSS goes to json/$size-KIND.kb, with --watch-tmp the peak of its
# temporary files to json/$size-KIND.tmp. Uses $size, $out and $repo.
bg_group='' bg_pid='' tmp_watched=''
rss_run() {
  local kind=$1 what=$2 status=0 load_before timef logf tmpdir pid wpid rss wall
  shift 2
  timef=$out/logs/$size-$kind.time logf=$out/logs/$size-$kind.log
  # The timed runs settle after themselves; later RSS runs after the one before.
  $first_rss || settle
  first_rss=false
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  if $watch_tmp; then
    tmpdir=$out/tmp-$size-$kind
    rm -rf -- "$tmpdir" && mkdir -p -- "$tmpdir"
    tmp_watched=$tmpdir
    # In the background, so that the sampler can watch it. A script's
    # background jobs ignore Ctrl-C: setsid gives the run a process group of
    # its own, which cleanup ends (the plugin removes its container on TERM).
    setsid /usr/bin/time -v -o "$timef" env TMPDIR="$tmpdir" "$@" >"$logf" 2>&1 &
    pid=$!
    bg_group=$pid
    python3 "$bench_dir/tmpwatch.py" --dir "$tmpdir" --pid "$pid" --out "$out/json/$size-$kind.tmp" &
    wpid=$!
    bg_pid=$wpid
    wait "$pid" || status=$?
    bg_group=''
    wait "$wpid" || true
    bg_pid=''
    rm -rf -- "$tmpdir"
    tmp_watched=''
  else
    /usr/bin/time -v -o "$timef" "$@" >"$logf" 2>&1 || status=$?
  fi
  rm -f -- "$out/$size-rss.tar"
  docker rmi -f "$repo:rss" >/dev/null 2>&1 || true
  if ((status == 130 || status == 143)); then
    log "interrupted"
    exit 130
  elif ((status == 0)); then
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$timef")
    echo "$rss" >"$out/json/$size-$kind.kb"
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$timef")
    log "$size MiB: $what peak RSS $((rss / 1024)) MiB, wall $wall$( ! $watch_tmp || [[ ! -f $out/json/$size-$kind.tmp ]] ||
      echo ", peak TMPDIR $(($(cat "$out/json/$size-$kind.tmp") / 1048576)) MiB") (load before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg))"
  else
    log "$size MiB: the $what peak-RSS run failed:"
    tail -n 15 "$logf" >&2 || true
  fi
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
    names+=(output pigz)
    cmd[output]="docker flatten -q -o $(archive output) $(q "$src") $(q "$repo:output")"
    cmd[pigz]="$(q "$bench_dir/export-pigz.sh") $(q "$src") $(archive pigz) $(q "$run_label")"
  fi
  names+=(save)
  cmd[save]="docker save -o $(archive save) $(q "$src")"
  # The archive -i, skopeo and the merge stages read: the source as docker
  # save writes it.
  saved=$work/$size-in.tar
  if $input; then
    names+=(input skopeo)
    cmd[input]="docker flatten -q -i $(q "$saved") -o $(archive input)"
    cmd[skopeo]="skopeo copy -q docker-archive:$(q "$saved") oci-archive:$(archive skopeo)"
  fi
  # The engine's floors: a load of the finished result from a file, which
  # floor_prep below writes once. Loading it tags $repo:NAME again, which
  # --prepare removes before each run.
  floor_file() { printf '%s/%s-%s.tar' "$work" "$size" "$1"; }
  names+=(floor)
  cmd[floor]="docker load -q -i $(q "$(floor_file floor)")"
  if $zstd; then
    names+=(floorzstd)
    cmd[floorzstd]="docker load -q -i $(q "$(floor_file floorzstd)")"
  fi
  if $merge; then
    names+=(floorkeep)
    cmd[floorkeep]="docker load -q -i $(q "$(floor_file floorkeep)")"
  fi
  # The stages alone: the engine's export, and the client's merge of the
  # saved archive (no engine) without and with compression. -o FILE, not
  # /dev/null: the plugin writes an unnamed file beside FILE and links it
  # over FILE at the end; -o - would spool the layer into TMPDIR first.
  names+=(export)
  cmd[export]="$(q "$bench_dir/export-null.sh") $(q "$src") $(q "$run_label")"
  if $has_input; then
    names+=(merge mergegzip)
    cmd[merge]="docker flatten -q -i $(q "$saved") -o $(archive merge) --compression none"
    cmd[mergegzip]="docker flatten -q -i $(q "$saved") -o $(archive mergegzip) --compression gzip"
    if $zstd; then
      names+=(mergezstd)
      cmd[mergezstd]="docker flatten -q -i $(q "$saved") -o $(archive mergezstd) --compression zstd"
    fi
  fi
  if [[ -n $only ]]; then
    wanted=()
    for name in "${names[@]}"; do [[ ,$only, != *,$name,* ]] || wanted+=("$name"); done
    names=("${wanted[@]}")
  fi
  wants() { [[ " ${names[*]} " == *" $1 "* ]]; }
  # Nothing to prepare for no rounds (--runs 0: only the peak-RSS runs).
  ((runs > 0)) || names=()
  if wants input || wants skopeo || wants merge || wants mergegzip || wants mergezstd; then
    [[ -f $saved ]] || docker save -o "$saved" "$src"
  fi
  # A floor's file: the result of one untimed flatten, saved, its tag removed.
  floor_prep() {
    local name=$1 file tag=$repo:$1
    shift
    file=$(floor_file "$name")
    log "$size MiB: $name: an untimed docker flatten${*:+ $*} and docker save of its result"
    if docker flatten -q "$@" "$src" "$tag" >"$out/logs/$size-$name-prep.log" 2>&1 &&
      docker save -o "$file" "$tag" 2>>"$out/logs/$size-$name-prep.log"; then
      docker rmi "$tag" >/dev/null
      stat -c %s "$file" >"$out/json/$size-$name.input-bytes"
    else
      log "$size MiB: $name: the flatten or save failed, not timed; its output:"
      tail -n 15 "$out/logs/$size-$name-prep.log" >&2 || true
      docker rmi -f "$tag" >/dev/null 2>&1 || true
      rm -f -- "$file"
      return 1
    fi
  }
  declare -A failed=()
  if wants floor; then floor_prep floor || failed[floor]=1; fi
  if wants floorzstd; then floor_prep floorzstd --compression zstd || failed[floorzstd]=1; fi
  if wants floorkeep; then floor_prep floorkeep --keep-base "$(base_tag "$size")" || failed[floorkeep]=1; fi
  for name in "${names[@]}"; do echo "command $size $name: ${cmd[$name]}"; done >>"$out/env.txt"
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
  # With --watch-tmp, TMPDIR is a fresh dir under the results dir and
  # bench/tmpwatch.py samples what the run holds there.
  if $watch_tmp && [[ $rss_kinds != none ]]; then
    docker history --no-trunc --human=false --format '{{.Size}}' "$src" | sort -n | tail -n 1 \
      >"$out/json/$size-largest-layer.bytes"
  fi
  first_rss=true
  if wants_rss flatten; then
    rss_run rss flatten "$plugin_bin" flatten -q "$src" "$repo:rss"
  fi
  if $merge && wants_rss exact; then
    rss_run rss-exact "flatten --exact" "$plugin_bin" flatten -q --exact "$src" "$repo:rss"
  fi
  if $merge && wants_rss keep; then
    rss_run rss-keep "flatten --keep-layers 4" "$plugin_bin" flatten -q --keep-layers 4 "$src" "$repo:rss"
  fi
  if $merge && wants_rss keepbase; then
    rss_run rss-keepbase "flatten --keep-base" "$plugin_bin" flatten -q --keep-base "$(base_tag "$size")" \
      "$src" "$repo:rss"
  fi
  if $output && wants_rss output; then
    rss_run rss-output "flatten -o" "$plugin_bin" flatten -q -o "$out/$size-rss.tar" "$src" "$repo:rss"
  fi
  if $input && wants_rss input; then
    [[ -f $saved ]] || docker save -o "$saved" "$src"
    rss_run rss-input "flatten -i" env DOCKER_HOST=unix:///nonexistent \
      "$plugin_bin" flatten -q -i "$saved" -o "$out/$size-rss.tar"
  fi
  rm -f -- "$saved" "$(floor_file floor)" "$(floor_file floorzstd)" "$(floor_file floorkeep)"
  unset cmd failed
done

# --- the table ----------------------------------------------------------------
layers() { docker image inspect --format '{{len .RootFS.Layers}}' "$(src_tag "$1")"; }
size_info=$(for s in "${size_list[@]}"; do printf '%s:%s ' "$s" "$(layers "$s")"; done)
python3 - "$out" "$engine_line" "$machine_line" "$runs" "$size_info" "$store" "$shape" >"$out/results.md" <<'EOF'
import glob, json, os, statistics, sys

out, engine, machine, runs, size_info, store, shape = sys.argv[1:]
sizes = [tuple(x.split(":")) for x in size_info.split()]
names = ["flatten", "bare", "squash", "zstd", "exact", "keep", "keepbase", "verify", "exactv",
         "output", "pigz", "save", "platforms2", "input", "skopeo",
         "floor", "floorzstd", "floorkeep", "export", "merge", "mergegzip", "mergezstd"]
titles = {"flatten": "docker flatten", "bare": "export \\| import",
          "squash": "docker-squash", "zstd": "flatten zstd",
          "exact": "flatten --exact", "keep": "flatten --keep-layers 4",
          "keepbase": "flatten --keep-base",
          "verify": "flatten --verify", "exactv": "flatten --exact --verify",
          "output": "flatten -o FILE", "pigz": "export \\| pigz -1", "save": "docker save",
          "platforms2": "flatten, 2 platforms",
          "input": "flatten -i IN -o FILE", "skopeo": "skopeo copy IN FILE",
          "floor": "load of the result (floor)", "floorzstd": "load of the zstd result (floorzstd)",
          "floorkeep": "load of the keep-base result", "export": "export > /dev/null",
          "merge": "merge (-i, none)", "mergegzip": "merge+gzip (-i)", "mergezstd": "merge+zstd (-i)"}

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
print(f"Image shape: {shape}. Median of {runs} run(s) each, runs alternating (min–max in brackets).")
print()
head = ["image", "layers"] + [titles[n] for n in shown] + (["flatten / bare"] if "bare" in shown else [])
if "squash" in shown:
    head.append("squash / flatten")
if "zstd" in shown:
    head.append("zstd / flatten")
for n in ("exact", "keep", "keepbase"):
    if n in shown:
        head.append(f"{n} / flatten")
if "floor" in shown:
    head.append("flatten / floor")
if "floorzstd" in shown:
    head.append("zstd / floorzstd")
if "keepbase" in shown and "save" in shown:
    head.append("keepbase / save")
if store == "graphdriver" and "exact" in shown:
    head.append("exact / (save + floor)")
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
rss_titles = {"rss": "flatten", "rss-output": "-o", "rss-exact": "--exact",
              "rss-keep": "--keep-layers 4", "rss-keepbase": "--keep-base", "rss-input": "-i"}
def ran(kind, ext):
    return any(os.path.exists(f"{out}/json/{s}-{kind}.{ext}") for s, _ in sizes)
kinds = [k for k in rss_titles if ran(k, "kb") or (k == "rss-output" and "output" in shown)]
head += [f"{rss_titles[k]} peak RSS" for k in kinds]
tmp_kinds = [k for k in rss_titles if ran(k, "tmp")]
head += [f"{rss_titles[k]} peak TMPDIR" for k in tmp_kinds]  # all its files at once
if tmp_kinds:
    head.append("largest layer")
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
    if "floor" in shown:
        row.append(ratio(s, "flatten", "floor"))
    if "floorzstd" in shown:
        row.append(ratio(s, "zstd", "floorzstd"))
    if "keepbase" in shown and "save" in shown:
        row.append(ratio(s, "keepbase", "save"))
    if store == "graphdriver" and "exact" in shown:
        row.append(f"{med[s, 'exact'] / (med[s, 'save'] + med[s, 'floor']):.2f}"
                   if all((s, n) in med for n in ("exact", "save", "floor")) else "–")
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
    for kind in kinds:
        rss = f"{out}/json/{s}-{kind}.kb"
        row.append(f"{int(open(rss).read()) / 1024:.1f} MiB" if os.path.exists(rss) else "–")
    def mib(path):
        return f"{int(open(path).read()) / 2**20:.1f} MiB" if os.path.exists(path) else "–"
    for kind in tmp_kinds:
        peak = f"{out}/json/{s}-{kind}.tmp"
        largest = peak + ".largest"
        row.append(mib(peak) + (f" (largest file {mib(largest)})" if os.path.exists(largest) else ""))
    if tmp_kinds:
        row.append(mib(f"{out}/json/{s}-largest-layer.bytes"))
    print("| " + " | ".join(row) + " |")
files = [(s, n) for s, _ in sizes for n in ["output", "pigz", "save", "input", "skopeo", "merge", "mergegzip", "mergezstd"]
         if os.path.exists(f"{out}/json/{s}-{n}.bytes")]
if files:
    print()
    print("Files written: " + "; ".join(
        f"{titles[n]} {int(open(f'{out}/json/{s}-{n}.bytes').read()) / 2**20:.1f} MiB ({s} MiB image)"
        for s, n in files))

# The stages: each stage of a flatten timed alone, and what they add up to
# per mode. gzip and zstd are the merge's time with them less without.
def stage(s, n):
    if n in ("gzip", "zstd"):
        full = (s, "mergegzip") if n == "gzip" else (s, "mergezstd")
        if n == "gzip" and full not in med:
            full = (s, "input")  # the same command: -i IN -o FILE, gzip
        if full in med and (s, "merge") in med:
            return max(0.0, med[full] - med[s, "merge"])
        return None
    return med.get((s, n))

stage_names = ["export", "save", "floor", "floorzstd", "floorkeep", "merge", "gzip", "zstd"]
stage_titles = {"export": "export", "save": "save", "floor": "load (floor)", "floorzstd": "load zstd (floorzstd)",
                "floorkeep": "load keep-base result", "merge": "merge",
                "gzip": "gzip (merge+gzip − merge)", "zstd": "zstd (merge+zstd − merge)"}
# What each mode goes through, in order. A graphdriver engine gets the
# default modes' layer uncompressed (--compression auto), so no gzip there.
compress = ["gzip"] if store == "containerd" else []
modes = [("flatten", ["export"] + compress + ["floor"]),
         ("zstd", ["export", "zstd", "floorzstd"]),
         ("exact", ["save", "merge"] + compress + ["floor"]),
         ("keepbase", ["save", "floorkeep"]),
         ("output", ["export", "gzip"])]
notes = {"keepbase": "+ the merge of the top layers (not timed alone: in the rest)",
         "output": "+ writing FILE"}
stage_shown = [n for n in stage_names if any(stage(s, n) is not None for s, _ in sizes)]
if stage_shown:
    print()
    print("Stages, each timed alone (median, seconds):")
    print()
    head = ["image"] + [stage_titles[n] for n in stage_shown]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(" --- " for _ in head) + "|")
    for s, _ in sizes:
        mib_ = int(s)
        label = f"{mib_ / 1024:g} GiB" if mib_ >= 1024 else f"{mib_} MiB"
        print("| " + " | ".join([label] + [f"{v:.2f} s" if (v := stage(s, n)) is not None else "–"
                                          for n in stage_shown]) + " |")
    rows = []
    for s, _ in sizes:
        mib_ = int(s)
        label = f"{mib_ / 1024:g} GiB" if mib_ >= 1024 else f"{mib_} MiB"
        for mode, parts in modes:
            vals = [stage(s, n) for n in parts]
            if any(v is None for v in vals):
                continue
            total = sum(vals)
            slow = max(zip(vals, parts))
            measured = med.get((s, mode))
            rows.append([label, mode, " → ".join(parts) + (" " + notes[mode] if mode in notes else ""),
                         f"{total:.2f} s", f"{slow[1]} ({slow[0]:.2f} s, {slow[0] / total:.0%})",
                         f"{measured:.2f} s" if measured is not None else "–",
                         f"{measured / total:.2f}" if measured is not None and total else "–",
                         f"{measured - total:+.2f} s" if measured is not None else "–"])
    if rows:
        print()
        print("Modes as the sum of their stages. A mode streams one stage into the next (the export")
        print("into the load), so it takes at least its slowest stage and at most about the sum.")
        print()
        head = ["image", "mode", "stages", "sum of stages", "slowest stage", "mode measured",
                "measured / sum", "rest"]
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join(" --- " for _ in head) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
EOF
echo
cat "$out/results.md"
echo
log "results: $out"
