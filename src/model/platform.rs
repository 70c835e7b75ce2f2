//! Image platforms (`os/arch[/variant]`): `--platform` read with the docker
//! CLI's spelling and the engine's matching rules (containerd's `platforms`
//! package: `Parse`, `Normalize` and the equality matcher), so that
//! `linux/arm64` picks `linux/arm64/v8`, `linux/x86_64` picks `linux/amd64`
//! and `linux/arm` picks `linux/arm/v7`; and the refusal that lists what an
//! image has when the platform asked for is not there.

use std::fmt;

use serde_json::{json, Value};

/// An OCI platform: what an index entry or an image config says it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    /// Empty when there is none.
    pub variant: String,
    /// Windows only in practice; empty when there is none.
    pub os_version: String,
}

/// Why a `--platform` value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid platform \"{spec}\": {why}; use os/arch[/variant], e.g. linux/arm64 or linux/arm/v7"
)]
pub struct ParseError {
    spec: String,
    why: &'static str,
}

/// Operating systems Go knows (containerd's list): a one-word specifier that
/// is one of them names the OS, anything else an architecture.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
    "zos",
];

/// Architectures Go knows: a one-word specifier must be one of them or an OS.
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "ppc64",
    "ppc64le",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

impl Platform {
    /// Reads a `--platform` value as the docker CLI does: `os`, `arch`,
    /// `os/arch` or `os/arch/variant`, with an optional `os(version)`. A
    /// lone OS takes this machine's architecture and a lone architecture
    /// this machine's OS, as the CLI (which runs here too) would.
    pub fn parse(spec: &str) -> Result<Platform, ParseError> {
        let fail = |why| ParseError {
            spec: spec.to_owned(),
            why,
        };
        if spec.contains('*') {
            return Err(fail("wildcards are not supported"));
        }
        let parts: Vec<&str> = spec.split('/').collect();
        if parts.len() > 3 {
            return Err(fail("more than three parts"));
        }
        let (os, os_version) = split_os_version(parts[0]).ok_or_else(|| {
            fail("the OS must be letters, digits, '_' or '-', optionally with a (version)")
        })?;
        let os = normalize_os(os);
        if parts[1..].iter().any(|p| !is_component(p)) {
            return Err(fail(
                "the architecture and variant must be letters, digits, '.', '_' or '-'",
            ));
        }
        let with = |os: String, (architecture, variant): (String, String)| Platform {
            os,
            architecture,
            variant,
            os_version: os_version.to_owned(),
        };
        match parts[..] {
            [_] if KNOWN_OS.contains(&os.as_str()) => {
                Ok(with(os, (host_architecture().to_owned(), String::new())))
            }
            [word] => {
                let (arch, variant) = normalize_arch(word, "");
                if !KNOWN_ARCH.contains(&arch.as_str()) {
                    return Err(fail("not an operating system or architecture Go knows"));
                }
                Ok(with(
                    std::env::consts::OS.to_owned(),
                    bare_arm(arch, variant),
                ))
            }
            [_, arch] => {
                let (arch, variant) = normalize_arch(arch, "");
                Ok(with(os, bare_arm(arch, variant)))
            }
            [_, arch, variant] => {
                let (arch, mut variant) = normalize_arch(arch, variant);
                // `arm64/v8` is spelled out, as containerd keeps it.
                if arch == "arm64" && variant.is_empty() {
                    variant = "v8".to_owned();
                }
                Ok(with(os, (arch, variant)))
            }
            _ => Err(fail("empty")),
        }
    }

    /// The platform of an OCI descriptor's `platform` object or of an image
    /// config (`os`, `architecture`, `variant`, `os.version`); `None` when
    /// it names no OS or architecture.
    pub fn from_oci(value: &Value) -> Option<Platform> {
        let field = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or("");
        let (os, architecture) = (field("os"), field("architecture"));
        if os.is_empty() || architecture.is_empty() {
            return None;
        }
        Some(Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: field("variant").to_owned(),
            os_version: field("os.version").to_owned(),
        })
    }

    /// The OCI `platform` object, with only the fields that are set.
    pub fn to_oci(&self) -> Value {
        let mut v = json!({"architecture": self.architecture, "os": self.os});
        if !self.variant.is_empty() {
            v["variant"] = json!(self.variant);
        }
        if !self.os_version.is_empty() {
            v["os.version"] = json!(self.os_version);
        }
        v
    }

    /// containerd's canonical form: `aarch64` → `arm64`, `arm64/v8` →
    /// `arm64`, `x86_64` → `amd64`, `amd64/v1` → `amd64`, `arm` → `arm/v7`,
    /// `armhf` → `arm/v7`, `armel` → `arm/v6`, lower case throughout.
    pub fn normalized(&self) -> Platform {
        let (architecture, variant) = normalize_arch(&self.architecture, &self.variant);
        Platform {
            os: normalize_os(&self.os),
            architecture,
            variant,
            os_version: self.os_version.clone(),
        }
    }

    /// Whether `other` is this platform, as the engine decides it for
    /// `--platform`: equal OS, architecture and variant once normalized
    /// (and equal OS version when this one names one).
    pub fn matches(&self, other: &Platform) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        a.os == b.os
            && a.architecture == b.architecture
            && a.variant == b.variant
            && (a.os_version.is_empty() || a.os_version == b.os_version)
    }
}

impl fmt::Display for Platform {
    /// `os/arch[/variant]`, as `--platform` spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// A two-part `os/arm` means the default ARM variant, which the parsed
/// form leaves unsaid (as containerd's `Parse` does); matching supplies it.
fn bare_arm(arch: String, variant: String) -> (String, String) {
    if arch == "arm" && variant == "v7" {
        (arch, String::new())
    } else {
        (arch, variant)
    }
}

fn normalize_os(os: &str) -> String {
    match os.to_ascii_lowercase().as_str() {
        "" => std::env::consts::OS.to_owned(),
        "macos" => "darwin".to_owned(),
        other => other.to_owned(),
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (arch, variant) = (arch.to_ascii_lowercase(), variant.to_ascii_lowercase());
    let (arch, variant): (&str, &str) = match (arch.as_str(), variant.as_str()) {
        ("i386", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", "8" | "v8" | "v8.0") => ("arm64", ""),
        ("aarch64" | "arm64", "9" | "9.0" | "v9.0") => ("arm64", "v9"),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7") => ("arm", "v7"),
        ("arm", "5") => ("arm", "v5"),
        ("arm", "6") => ("arm", "v6"),
        ("arm", "8") => ("arm", "v8"),
        (a, v) => return (a.to_owned(), v.to_owned()),
    };
    (arch.to_owned(), variant.to_owned())
}

/// `os` or `os(version)`.
fn split_os_version(part: &str) -> Option<(&str, &str)> {
    let is_os = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    match part.split_once('(') {
        None => is_os(part).then_some((part, "")),
        Some((os, rest)) => {
            let version = rest.strip_suffix(')')?;
            let ok = version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            (is_os(os) && ok).then_some((os, version))
        }
    }
}

fn is_component(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// This machine's architecture in Go's (and so the CLI's) spelling.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// One platform of IMAGE, as the refusal lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    pub platform: Platform,
    /// Whether the store has its content (a pull fetches only the host's).
    pub present: bool,
}

/// The platform asked for is not one IMAGE has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{image} has no platform {wanted}{}", offered_list(.offered))]
pub struct NotOffered {
    pub image: String,
    pub wanted: Platform,
    pub offered: Vec<Offered>,
}

fn offered_list(offered: &[Offered]) -> String {
    if offered.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = offered
        .iter()
        .map(|o| {
            if o.present {
                o.platform.to_string()
            } else {
                format!("{} (content not in the store)", o.platform)
            }
        })
        .collect();
    format!("; it has {}", listed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: &str) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.into(),
            os_version: String::new(),
        }
    }

    #[test]
    fn parses_the_cli_s_spellings() {
        assert_eq!(Platform::parse("linux/amd64"), Ok(p("linux", "amd64", "")));
        assert_eq!(Platform::parse("Linux/x86_64"), Ok(p("linux", "amd64", "")));
        assert_eq!(
            Platform::parse("linux/aarch64"),
            Ok(p("linux", "arm64", ""))
        );
        assert_eq!(
            Platform::parse("linux/arm64/v8"),
            Ok(p("linux", "arm64", "v8"))
        );
        assert_eq!(
            Platform::parse("linux/arm64/8"),
            Ok(p("linux", "arm64", "v8"))
        );
        assert_eq!(Platform::parse("linux/arm"), Ok(p("linux", "arm", "")));
        assert_eq!(Platform::parse("linux/arm/7"), Ok(p("linux", "arm", "v7")));
        assert_eq!(Platform::parse("linux/armhf"), Ok(p("linux", "arm", "")));
        assert_eq!(Platform::parse("linux/armel"), Ok(p("linux", "arm", "v6")));
        assert_eq!(Platform::parse("linux/i386"), Ok(p("linux", "386", "")));
        assert_eq!(Platform::parse("macos/arm64"), Ok(p("darwin", "arm64", "")));
        assert_eq!(
            Platform::parse("linux/amd64/v3"),
            Ok(p("linux", "amd64", "v3"))
        );
        let windows = Platform::parse("windows(10.0.17763)/amd64").unwrap();
        assert_eq!(
            (windows.os.as_str(), windows.os_version.as_str()),
            ("windows", "10.0.17763")
        );
        assert_eq!(Platform::parse("arm64").unwrap().architecture, "arm64");
        assert_eq!(Platform::parse("arm64").unwrap().os, std::env::consts::OS);
        assert_eq!(
            Platform::parse("linux").unwrap().architecture,
            host_architecture()
        );
    }

    #[test]
    fn refuses_what_the_cli_refuses() {
        for bad in [
            "",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/*",
            "linux/am d64",
            "nosuch",
            "lin(ux/amd64",
        ] {
            let err = Platform::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("os/arch[/variant]"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn matches_as_the_engine_does() {
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(arm64.matches(&p("linux", "arm64", "v8")));
        assert!(arm64.matches(&p("linux", "arm64", "")));
        assert!(Platform::parse("linux/arm64/v8")
            .unwrap()
            .matches(&p("linux", "arm64", "")));
        assert!(!arm64.matches(&p("linux", "arm64", "v9")));
        assert!(!arm64.matches(&p("linux", "arm", "v8")));
        let arm = Platform::parse("linux/arm").unwrap();
        assert!(arm.matches(&p("linux", "arm", "v7")));
        assert!(arm.matches(&p("linux", "arm", "")));
        assert!(
            !arm.matches(&p("linux", "arm", "v6")),
            "v6 is not the default arm"
        );
        assert!(Platform::parse("linux/x86_64")
            .unwrap()
            .matches(&p("linux", "amd64", "")));
        assert!(Platform::parse("linux/amd64")
            .unwrap()
            .matches(&p("linux", "amd64", "v1")));
        assert!(!Platform::parse("linux/amd64")
            .unwrap()
            .matches(&p("linux", "amd64", "v3")));
        assert!(!Platform::parse("linux/amd64")
            .unwrap()
            .matches(&p("windows", "amd64", "")));
        assert!(!Platform::parse("linux/amd64")
            .unwrap()
            .matches(&p("linux", "386", "")));
    }

    #[test]
    fn reads_and_writes_oci_platforms() {
        let v = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
        let platform = Platform::from_oci(&v).unwrap();
        assert_eq!(platform.to_string(), "linux/arm64/v8");
        assert_eq!(platform.to_oci(), v);
        let config =
            json!({"os": "windows", "architecture": "amd64", "os.version": "10.0.1", "config": {}});
        let windows = Platform::from_oci(&config).unwrap();
        assert_eq!(
            windows.to_oci(),
            json!({"os": "windows", "architecture": "amd64", "os.version": "10.0.1"})
        );
        assert_eq!(Platform::from_oci(&json!({"os": "unknown"})), None);
    }

    #[test]
    fn a_refusal_lists_what_the_image_has() {
        let offered = vec![
            Offered {
                platform: p("linux", "amd64", ""),
                present: true,
            },
            Offered {
                platform: p("linux", "arm64", "v8"),
                present: false,
            },
        ];
        let wanted = Platform::parse("linux/s390x").unwrap();
        let err = NotOffered {
            image: "app:1".into(),
            wanted,
            offered: offered.clone(),
        };
        assert_eq!(
            err.to_string(),
            "app:1 has no platform linux/s390x; it has linux/amd64, \
             linux/arm64/v8 (content not in the store)"
        );
    }
}
