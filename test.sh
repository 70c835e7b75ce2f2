#!/usr/bin/env bash
# Every test, on every engine, from a fresh Debian machine: installs what the
# tests need, brings up the engines, checks formatting and lints, runs the
# whole suite against each engine, and stops the engines it started.
# Run ./test.sh --help for the options.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./test.sh [--engine NAME]... [-- CARGO_TEST_ARGS...]

Runs, as root on a Debian machine with Rust (rustup) and network access to
Debian's packages:
  1. apt-get install of what the tests use (only what is missing);
  2. the engines: the machine's own (started if it does not answer), and two
     private containerd-store engines unpacked from Debian's packages by
     .ci/containerd-engine (Engine 26.1 from trixie, Engine 28.5 from sid);
  3. cargo fmt --check and cargo clippy --all-targets -D warnings, for
     Linux and, cross-compiled, for x86_64-pc-windows-gnu (C parts with
     Debian's mingw-w64), aarch64-apple-darwin and x86_64-apple-darwin
     (C parts with Zig's C compiler, from PyPI into a virtualenv);
  4. the Windows release .exe, built once for tests/windows.rs (which runs
     it under wine), then cargo test --locked --no-fail-fast against each
     engine in turn (DOCKER_HOST set to it), so one failing test binary
     hides no other;
  5. a line per engine with its version, image store and test counts.
It stops the engines it started. It fails if an engine does not start, a
check fails, a test fails, or a test is ignored: no engine is ever skipped.
Running it again reuses what is installed, downloaded and unpacked.

Options:
  --engine NAME   only this engine (repeatable): machine, 26.1 or 28.5
                  (default: all three)
  --no-lint       skip cargo fmt and clippy (for a quick rerun)
  -h, --help      show this help
Arguments after -- go to every `cargo test` (a test name filter, say).

`cargo test --locked` alone is the inner command: it runs the suite against
the one engine that DOCKER_HOST (or the default socket) names.
EOF
}

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }

engines=() lint=true cargo_args=()
while (($#)); do
  case $1 in
    --engine)
      [[ ${2:-} =~ ^(machine|26\.1|28\.5)$ ]] || die "--engine takes machine, 26.1 or 28.5 (got '${2:-}')"
      engines+=("$2"); shift 2 ;;
    --no-lint) lint=false; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; cargo_args=("$@"); break ;;
    *) usage >&2; exit 2 ;;
  esac
done
((${#engines[@]})) || engines=(machine 26.1 28.5)

cd -- "$(dirname -- "${BASH_SOURCE[0]}")"
[[ $(id -u) == 0 ]] || die "run as root: the tests start engines, mount tmpfs and run sshd"
export DEBIAN_FRONTEND=noninteractive
start=$SECONDS

# ----------------------------------------------------------- packages --

apt_updated=false
apt_install() {
  # Wait for the lock if a fresh machine is still running its own apt jobs;
  # keep progress bars out of the log.
  local opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
  $apt_updated || { apt-get "${opts[@]}" update -qq; apt_updated=true; }
  apt-get "${opts[@]}" install -y -qq --no-install-recommends "$@"
}

say "test dependencies"
# package: the file that shows it is installed
declare -A needs=(
  [busybox-static]=/bin/busybox          # a static shell for test images that run
  [socat]=/usr/bin/socat                 # the TLS listener in front of an engine
  [openssl]=/usr/bin/openssl             # certificates for the TLS tests
  [openssh-server]=/usr/sbin/sshd        # a private sshd for ssh endpoints (brings ssh, ssh-keygen)
  [tmux]=/usr/bin/tmux                   # a real terminal for the progress display
  [containerd]=/usr/bin/ctr             # ctr, to remove a blob from a test engine's content store
  [runc]=/usr/sbin/runc                  # the containerd-store engines use the machine's runc
  [tini]=/usr/bin/tini                   # ...and its docker-init
  [umoci]=/usr/bin/umoci                 # real consumers of what the plugin writes
  [skopeo]=/usr/bin/skopeo
  [libarchive-tools]=/usr/bin/bsdtar
  [docker-registry]=/usr/bin/docker-registry
  [gcc-mingw-w64-x86-64]=/usr/bin/x86_64-w64-mingw32-gcc  # the Windows build's C parts and linker
  [wine]=/usr/bin/wine                   # runs the Windows build (tests/windows.rs)
  [wine64]=/usr/lib/wine/wine64
)
missing=()
for pkg in "${!needs[@]}"; do
  [[ -e ${needs[$pkg]} ]] || missing+=("$pkg")
done
# The engine and the CLI, if the machine has none (Docker's own packages do as well).
command -v docker >/dev/null && command -v dockerd >/dev/null || missing+=(docker.io)
if ((${#missing[@]})); then apt_install "${missing[@]}"; else echo "all present"; fi

# rustup adds ~/.cargo/bin to PATH only in login shells.
command -v cargo >/dev/null || PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain with rustup"
cargo --version

say "cross-compilation targets"
# The targets the lint step checks; the Windows one is also built and run.
windows_target=x86_64-pc-windows-gnu
mac_targets=(aarch64-apple-darwin x86_64-apple-darwin)
installed=$(rustup target list --installed)
for t in "$windows_target" "${mac_targets[@]}"; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
echo "$windows_target ${mac_targets[*]}"

# Zig's C compiler builds the C parts (zstd, ring) for the macOS lints;
# Debian has no Zig, so it comes from PyPI (the ziglang package) into a
# virtualenv kept between runs. cc-rs takes a program, not a command line:
# one wrapper script per target.
zig_venv=${XDG_CACHE_HOME:-$HOME/.cache}/docker-flatten/ziglang
zig_bin=$zig_venv/wrappers
if $lint; then
  if ! "$zig_venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
    python3 -m venv --clear "$zig_venv" 2>/dev/null || {
      apt_install python3-venv
      python3 -m venv --clear "$zig_venv"
    }
    "$zig_venv/bin/python3" -m pip install --quiet --disable-pip-version-check 'ziglang==0.14.1'
  fi
  mkdir -p "$zig_bin"
  for t in "${mac_targets[@]}"; do
    # cc-rs passes clang's --target= and Apple's -arch NAME, which zig cc
    # refuses (its -target says both): dropped.
    cat >"$zig_bin/cc-$t" <<EOF
#!/bin/sh
skip=
for a; do
  shift
  if [ -n "\$skip" ]; then skip=; continue; fi
  case \$a in -arch) skip=1; continue ;; --target=*) continue ;; esac
  set -- "\$@" "\$a"
done
exec "$zig_venv/bin/python3" -m ziglang cc -target ${t%%-*}-macos "\$@"
EOF
  done
  printf '#!/bin/sh\nexec "%s" -m ziglang ar "$@"\n' "$zig_venv/bin/python3" >"$zig_bin/ar"
  chmod +x "$zig_bin"/*
  echo "zig $("$zig_venv/bin/python3" -m ziglang version)"
fi

# `cargo clippy` for a macOS target, its C compiler set.
mac_cargo() {
  local t=$1 var
  var=${t//-/_}
  shift
  env "CC_$var=$zig_bin/cc-$t" "AR_$var=$zig_bin/ar" cargo "$@"
}

# ------------------------------------------------------------ engines --

started=()   # what to stop on exit
stop_started() {
  local e
  for e in "${started[@]}"; do
    case $e in
      machine) kill "$machine_pid" 2>/dev/null && { wait "$machine_pid" 2>/dev/null || true; } ;;
      *) DFLT_C8D_SUITE=$(suite "$e") bash .ci/containerd-engine stop >/dev/null 2>&1 ;;
    esac || printf 'test.sh: could not stop the %s engine\n' "$e" >&2
  done
}
trap stop_started EXIT

suite() { case $1 in 26.1) echo trixie ;; 28.5) echo sid ;; esac; }

declare -A host
start_engine() {
  local e=$1
  case $e in
    machine)
      host[$e]=unix:///var/run/docker.sock
      if ! DOCKER_HOST=${host[$e]} docker info >/dev/null 2>&1; then
        echo "the machine's engine does not answer: starting dockerd (log: /tmp/dockerd.log)"
        dockerd >/tmp/dockerd.log 2>&1 </dev/null &
        machine_pid=$!
        started+=(machine)
        local deadline=$((SECONDS + 60))
        until DOCKER_HOST=${host[$e]} docker info >/dev/null 2>&1; do
          if ((SECONDS >= deadline)) || ! kill -0 "$machine_pid" 2>/dev/null; then
            tail -n 30 /tmp/dockerd.log >&2 || true
            die "the machine's engine did not start (see /tmp/dockerd.log)"
          fi
          sleep 1
        done
      fi
      ;;
    *)
      local s
      s=$(suite "$e")
      DFLT_C8D_SUITE=$s bash .ci/containerd-engine status >/dev/null 2>&1 || started+=("$e")
      host[$e]=$(DFLT_C8D_SUITE=$s bash .ci/containerd-engine start) ||
        die "the Engine $e engine (containerd store, Debian $s) did not start; its log tails are above"
      ;;
  esac
}

declare -A described
for e in "${engines[@]}"; do
  say "engine $e"
  start_engine "$e"
  described[$e]=$(DOCKER_HOST=${host[$e]} docker version --format \
    'Engine {{.Server.Version}} (API {{.Server.APIVersion}})')
  store=$(DOCKER_HOST=${host[$e]} docker info --format '{{json .DriverStatus}}')
  if [[ $store == *io.containerd.snapshotter.v1* ]]; then store=containerd; else store=graphdriver; fi
  described[$e]+=", $store store, $(DOCKER_HOST=${host[$e]} docker info --format '{{.Driver}}'), ${host[$e]}"
  echo "${described[$e]}"
  # A containerd-store engine that came up with a graphdriver would test the wrong thing.
  [[ $e == machine || $store == containerd ]] || die "the Engine $e engine does not use the containerd image store"
done

# ------------------------------------------------------------- checks --

if $lint; then
  say "cargo fmt --all -- --check"
  cargo fmt --all -- --check
  say "cargo clippy --all-targets --locked -- -D warnings"
  cargo clippy --all-targets --locked -- -D warnings
  t0=$SECONDS
  say "cargo clippy --all-targets --target $windows_target --locked -- -D warnings"
  cargo clippy --all-targets --target "$windows_target" --locked -- -D warnings
  for t in "${mac_targets[@]}"; do
    say "cargo clippy --all-targets --target $t --locked -- -D warnings (C by zig cc)"
    mac_cargo "$t" clippy --all-targets --target "$t" --locked -- -D warnings
  done
  echo "cross lints: $((SECONDS - t0)) s"
fi

say "cargo build --release --locked --target $windows_target"
cargo build --release --locked --target "$windows_target"
# For tests/windows.rs, which runs it under wine in every suite.
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$PWD/$target_dir
export DOCKER_FLATTEN_WINDOWS_EXE=$target_dir/$windows_target/release/docker-flatten.exe
[[ -f $DOCKER_FLATTEN_WINDOWS_EXE ]] || die "the build did not make $DOCKER_FLATTEN_WINDOWS_EXE"

say "cargo test --locked --no-run"
cargo test --locked --no-run

declare -A counts
failed=false total_passed=0 total_failed=0
for e in "${engines[@]}"; do
  say "cargo test --locked${cargo_args[*]:+ ${cargo_args[*]}} on ${described[$e]}"
  log=$(mktemp)
  t0=$SECONDS
  rc=0
  (unset DOCKER_CONTEXT; DOCKER_HOST=${host[$e]} cargo test --locked --no-fail-fast "${cargo_args[@]}") 2>&1 | tee "$log" || rc=$?
  # "test result: ok. 57 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; ..."
  read -r passed failed_n ignored binaries < <(awk '
    /^test result: / { b++; for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i; if ($(i+1) ~ /^ignored;/) g += $i } }
    END { print p + 0, f + 0, g + 0, b + 0 }' "$log")
  rm -f "$log"
  counts[$e]="$passed passed, $failed_n failed, $ignored ignored in $binaries test binaries, $((SECONDS - t0)) s"
  total_passed=$((total_passed + passed)) total_failed=$((total_failed + failed_n))
  if ((rc)) || ((failed_n)); then failed=true; fi
  if ((ignored)); then
    echo "test.sh: $ignored test(s) ignored on Engine $e: every test must run" >&2
    failed=true
  fi
  if ((binaries == 0)); then
    echo "test.sh: no test ran on Engine $e" >&2
    failed=true
  fi
done

say "results ($((SECONDS - start)) s)"
for e in "${engines[@]}"; do
  printf '%-8s %s\n         %s\n' "$e" "${described[$e]}" "${counts[$e]}"
done
echo "total: $total_passed passed, $total_failed failed"
! $failed
