#!/usr/bin/env bash
# Build docker-flatten and install it as a Docker CLI plugin, so that
# `docker flatten IMAGE TAG` works. Run ./install.sh --help for the options.
# Runs on Linux and macOS (its bash 3.2 and BSD tools: no GNU-only flags);
# Windows: see docs/install.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./install.sh [--system] [--uninstall]

Builds docker-flatten (cargo build --release --locked) and installs it as a
Docker CLI plugin, then checks that `docker flatten --help` reaches it.
Linux and macOS (Docker Desktop reads ~/.docker/cli-plugins too); for
Windows see docs/install.md.

Options:
  --system     use /usr/local/lib/docker/cli-plugins (all users; needs root)
               instead of ${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
  --uninstall  remove the plugin from that directory instead of installing
  -h, --help   show this help
EOF
}

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

system=false uninstall=false
for arg in "$@"; do
  case $arg in
    --system) system=true ;;
    --uninstall) uninstall=true ;;
    -h | --help) usage; exit 0 ;;
    *) log "unknown option: $arg"; usage >&2; exit 2 ;;
  esac
done

case $(uname -s) in
  MINGW* | MSYS* | CYGWIN*)
    die "on Windows, build with cargo and copy docker-flatten.exe by hand: see docs/install.md" ;;
esac

user_dir=${DOCKER_CONFIG:-${HOME:?HOME is not set}/.docker}/cli-plugins
if $system; then plugin_dir=/usr/local/lib/docker/cli-plugins; else plugin_dir=$user_dir; fi
dest=$plugin_dir/docker-flatten

if $uninstall; then
  if [[ -e $dest || -L $dest ]]; then
    rm -f -- "$dest" || die "cannot remove $dest (try with sudo)"
    log "removed $dest"
  else
    log "nothing installed at $dest"
  fi
  exit 0
fi

# rustup puts cargo on PATH only through shell profiles, which sudo, cron
# and non-login shells skip.
if ! command -v cargo >/dev/null; then
  cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
  if [[ -x $cargo_bin/cargo ]]; then PATH=$cargo_bin:$PATH; fi
fi
command -v cargo >/dev/null ||
  die "cargo not found: install the Rust toolchain (rustup) or put cargo on PATH"
# Checked before the build: without the docker CLI the plugin is useless.
command -v docker >/dev/null ||
  die "docker not found: install the Docker CLI or put docker on PATH"

src_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
cd -- "$src_dir"
log "building release binary in $src_dir"
cargo build --release --locked
bin=${CARGO_TARGET_DIR:-target}/release/docker-flatten
[[ -x $bin ]] || die "build finished but $bin is missing"

log "installing $dest"
mkdir -p -- "$plugin_dir" 2>/dev/null || die "cannot create $plugin_dir (try with sudo)"
# Copy next to the destination and rename over it, so that a docker command
# running meanwhile never sees a half-written plugin. The dot keeps the docker
# CLI from listing the temporary file as a plugin.
tmp=$(mktemp "$plugin_dir/.docker-flatten.XXXXXX" 2>/dev/null) ||
  die "cannot write to $plugin_dir (try with sudo)"
trap 'rm -f -- "$tmp"' EXIT
cp -- "$bin" "$tmp"
chmod 0755 "$tmp"
mv -f -- "$tmp" "$dest"
trap - EXIT

if $system && [[ -e $user_dir/docker-flatten ]]; then
  log "warning: $user_dir/docker-flatten takes precedence over $dest;" \
    "remove it with ./install.sh --uninstall"
fi

# `docker UNKNOWN --help` exits 0 with docker's own usage, so the exit code
# alone doesn't prove that the CLI found the plugin.
log "checking: docker flatten --help"
if help=$(docker flatten --help 2>&1) &&
  ! grep -qE '^Usage: +docker \[OPTIONS\] COMMAND' <<<"$help"; then
  printf '%s\n' "$help"
  log "done: docker flatten is installed ($dest)"
else
  reason=$(sed -n '/^Invalid Plugins:/,/^$/s/^ *flatten  *//p' <<<"$help")
  die "the docker CLI does not run the installed plugin${reason:+: $reason}"
fi
