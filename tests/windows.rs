//! The Windows build, checked from Linux: the release `.exe`, cross-built
//! for `x86_64-pc-windows-gnu` with mingw-w64, answers the docker CLI's
//! plugin handshake with `plugin-metadata` and prints the same help as the
//! build under test, run under wine (on Windows itself, run as it is).
//!
//! `./test.sh` builds the `.exe` once, before the suites, and names it in
//! `DOCKER_FLATTEN_WINDOWS_EXE`. Without that variable the test builds it:
//! `cargo build --release --locked --target x86_64-pc-windows-gnu` into a
//! target directory of its own (`windows-test` inside this one, whose lock
//! the running cargo holds), which a second run finds built.
//!
//! Wine 8 (Debian 12's) lacks `bcryptprimitives.dll`, whose `ProcessPrng`
//! Rust's std imports on Windows (every Windows since 10 has it): where the
//! test's wine prefix has none, the test builds a stand-in from
//! `tests/windows/bcryptprimitives.c` with mingw-w64 into that prefix only.
//!
//! Nothing here is skipped: a missing Rust target, linker or wine fails the
//! test, saying what to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

const TARGET: &str = "x86_64-pc-windows-gnu";
/// The `.exe` to check, when something built it already (test.sh does).
const EXE_VAR: &str = "DOCKER_FLATTEN_WINDOWS_EXE";
/// The mingw-w64 C compiler, which also links: the Rust target's default.
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// This test's own directory: the `.exe` it builds and wine's prefix.
fn work_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| manifest_dir().join(dir))
        .unwrap_or_else(|| manifest_dir().join("target"));
    target.join("windows-test")
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| file.is_file())
}

/// The release `.exe`, built once per test binary.
fn exe() -> &'static Path {
    static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match EXE.get_or_init(build) {
        Ok(path) => path,
        Err(why) => panic!("{why}"),
    }
}

fn build() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(EXE_VAR) {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok(path),
            false => Err(format!(
                "{EXE_VAR} names {}, which is no file",
                path.display()
            )),
        };
    }
    if cfg!(not(windows)) && on_path(MINGW_GCC).is_none() {
        return Err(format!(
            "{MINGW_GCC} is not on PATH: the Windows build needs Debian's mingw-w64 \
             (apt-get install gcc-mingw-w64-x86-64)"
        ));
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib")
        .is_dir()
    {
        return Err(format!(
            "the Rust target {TARGET} is not installed in {}: rustup target add {TARGET}",
            sysroot.display()
        ));
    }
    let target_dir = work_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(manifest_dir())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "cargo build --release --target {TARGET} failed ({}):\n{}",
            built.status,
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    Ok(target_dir.join(TARGET).join("release/docker-flatten.exe"))
}

/// How to run a Windows program here: wine, or nothing on Windows.
fn runner() -> Command {
    if cfg!(windows) {
        return Command::new(exe());
    }
    let wine = ["wine", "wine64"]
        .iter()
        .find_map(|name| on_path(name))
        .or_else(|| Some(PathBuf::from("/usr/lib/wine/wine64")).filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "wine is not installed: the Windows build runs under it \
                 (apt-get install wine wine64)"
            )
        });
    let wine = |program: &Path| {
        let mut command = Command::new(&wine);
        command
            .arg(program)
            // A prefix of its own; quiet; no prompts to install Mono or
            // Gecko, which a console program does not need.
            .env("WINEPREFIX", prefix())
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        command
    };
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        // Wine makes the prefix, not the directories above it.
        std::fs::create_dir_all(work_dir()).unwrap();
        let booted = wine(Path::new("wineboot")).arg("--init").output().unwrap();
        assert!(
            booted.status.success(),
            "wineboot --init: {}",
            String::from_utf8_lossy(&booted.stderr)
        );
        let dll = prefix().join("drive_c/windows/system32/bcryptprimitives.dll");
        if !dll.exists() {
            let source = manifest_dir().join("tests/windows/bcryptprimitives.c");
            let built = Command::new(MINGW_GCC)
                .args(["-O2", "-shared", "-o"])
                .arg(&dll)
                .arg(&source)
                .arg("-ladvapi32")
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run {MINGW_GCC} (apt-get install gcc-mingw-w64-x86-64): {e}")
                });
            assert!(
                built.status.success(),
                "{MINGW_GCC} {}: {}",
                source.display(),
                String::from_utf8_lossy(&built.stderr)
            );
        }
    });
    wine(exe())
}

/// The test's wine prefix.
fn prefix() -> PathBuf {
    work_dir().join("wine")
}

/// Runs the `.exe` with `args`, one at a time.
fn windows(args: &[&str]) -> Output {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let exe = exe();
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = runner()
        .args(args)
        // The handshake needs no engine; an unreachable one must not matter.
        .env("DOCKER_HOST", "tcp://127.0.0.1:1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(
        out.status.success(),
        "{} {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The same arguments given to the build under test, for Linux.
fn here(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_docker-flatten"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", out.status);
    out
}

#[test]
fn the_windows_exe_answers_the_plugin_handshake() {
    let out = windows(&["docker-cli-plugin-metadata"]);
    let shipped = std::fs::read(manifest_dir().join("plugin-metadata")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&shipped),
        "the metadata the docker CLI reads"
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["Version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_windows_exe_prints_the_same_help() {
    for (args, says) in [
        (
            &["--help"][..],
            "flatten  Flatten an image into a single layer",
        ),
        (
            &["flatten", "--help"],
            "Usage: docker flatten [OPTIONS] IMAGE TAG\n",
        ),
    ] {
        let out = windows(args);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains(says), "{args:?}:\n{help}");
        assert_eq!(
            help,
            String::from_utf8_lossy(&here(args).stdout),
            "{args:?}"
        );
    }
}
