//! Validation of the TAG argument against Docker's reference grammar
//! (`[domain[:port]/]path[:tag]`), so that a bad name is refused before any
//! work starts rather than after a long import.

use std::fmt;

/// A validated `name:tag` to point at the flattened image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Repository part, e.g. `localhost:5000/team/app`.
    pub repo: String,
    /// Tag part; `latest` when the user gave none.
    pub tag: String,
}

const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

impl Tag {
    /// Parses `name[:tag]`; digests are refused because a tag is what we create.
    pub fn parse(input: &str) -> Result<Tag, String> {
        let refuse = |why: &str| Err(format!("invalid reference \"{input}\": {why}"));
        if input.is_empty() {
            return refuse("it is empty");
        }
        if input.contains('@') {
            return refuse("a digest cannot be a target; give name[:tag]");
        }
        let (repo, tag) = match input.rfind(':') {
            Some(i) if !input[i..].contains('/') => (&input[..i], &input[i + 1..]),
            _ => (input, "latest"),
        };
        if repo.len() > MAX_NAME {
            return refuse("repository name must not be longer than 255 characters");
        }
        if let Err(why) = check_name(repo) {
            return refuse(why);
        }
        if !valid_tag(tag) {
            return refuse("a tag is 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'");
        }
        Ok(Tag {
            repo: repo.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

/// Whether `s` can be an image ID or a prefix of one (without `sha256:`):
/// 1 to 64 lowercase hexadecimal digits.
pub fn is_id_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks IMAGE (or BASE) before any work: an image ID or a prefix of one
/// (`sha256:` optional), or `name[:tag][@digest]` in Docker's grammar.
pub fn check_image(input: &str) -> Result<(), String> {
    if is_id_prefix(input.strip_prefix("sha256:").unwrap_or(input)) {
        return Ok(());
    }
    let (name, digest) = match input.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (input, None),
    };
    if let Some(digest) = digest {
        let valid = digest.split_once(':').is_some_and(|(algorithm, encoded)| {
            !algorithm.is_empty()
                && encoded.len() >= 32
                && is_id_prefix(&encoded[..encoded.len().min(64)])
                && encoded.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !valid {
            return Err(format!(
                "invalid reference \"{input}\": a digest is ALGORITHM:HEX, as sha256:…"
            ));
        }
    }
    Tag::parse(name)
        .map(drop)
        .map_err(|why| why.replacen(&format!("\"{name}\""), &format!("\"{input}\""), 1))
}

impl Tag {
    /// The fully qualified name, as the containerd image store keeps it
    /// (`io.containerd.image.name`): `app:1` is `docker.io/library/app:1`.
    pub fn full_name(&self) -> String {
        let (first, rest) = self.repo.split_once('/').unwrap_or(("", &self.repo));
        let names_registry = !first.is_empty()
            && (first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()));
        let repo = match (names_registry, first.is_empty()) {
            (true, _) => self.repo.clone(),
            (false, true) => format!("docker.io/library/{rest}"),
            (false, false) => format!("docker.io/{}", self.repo),
        };
        format!("{repo}:{}", self.tag)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repo, self.tag)
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("cannot use a 64-character hexadecimal string (an image ID) as a name");
    }
    let mut parts = name.split('/').peekable();
    let first = parts.next().unwrap_or_default();
    // As in the docker CLI, the first component names a registry only when it
    // looks like a host and more components follow.
    let path_first = if parts.peek().is_some()
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.bytes().any(|b| b.is_ascii_uppercase()))
    {
        check_domain(first)?;
        None
    } else {
        Some(first)
    };
    for component in path_first.into_iter().chain(parts) {
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("repository name must be lowercase");
        }
        if !valid_path_component(component) {
            return Err(
                "repository name components are [a-z0-9] separated by '.', '_', '__' or '-'",
            );
        }
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), &'static str> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || domain.starts_with('[') => (h, Some(p)),
        _ => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err("registry port must be a number");
        }
    }
    let ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
    } else {
        !host.is_empty()
            && host.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !c.starts_with('-')
                    && !c.ends_with('-')
            })
    };
    if ok {
        Ok(())
    } else {
        Err("invalid registry host")
    }
}

/// `[a-z0-9]+ ([_.]|__|-+) [a-z0-9]+ ...`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &b[start..i];
        let ok = sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_an_id_or_a_reference() {
        for good in [
            "app",
            "app:1.4",
            "registry.example:5000/team/app:1",
            "bb217b5af6a5",
            "sha256:bb217b5af6a5",
            "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "app:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check_image(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("UXT-APP:1", "lowercase"),
            ("app@sha256:xyz", "digest"),
            ("", "empty"),
            ("app:-x", "tag"),
        ] {
            let said = check_image(bad).unwrap_err();
            assert!(
                said.contains(why) && said.contains(&format!("\"{bad}\"")),
                "{said}"
            );
        }
    }

    #[test]
    fn full_names_are_as_the_containerd_store_keeps_them() {
        for (short, full) in [
            ("app", "docker.io/library/app:latest"),
            ("app:1", "docker.io/library/app:1"),
            ("team/app:1", "docker.io/team/app:1"),
            ("localhost:5000/app:1", "localhost:5000/app:1"),
            ("registry.example/a/b:2", "registry.example/a/b:2"),
            ("docker.io/library/app:1", "docker.io/library/app:1"),
        ] {
            assert_eq!(Tag::parse(short).unwrap().full_name(), full, "{short}");
        }
    }

    #[test]
    fn accepts_valid_references() {
        for (input, repo, tag) in [
            ("app", "app", "latest"),
            ("app:1.4-flat", "app", "1.4-flat"),
            ("team/app_x__y.z-w:V1_", "team/app_x__y.z-w", "V1_"),
            ("localhost:5000/app", "localhost:5000/app", "latest"),
            ("localhost:5000/app:t", "localhost:5000/app", "t"),
            (
                "Registry.Example.com/a/b:c",
                "Registry.Example.com/a/b",
                "c",
            ),
            ("[::1]:5000/app:t", "[::1]:5000/app", "t"),
            ("a---b", "a---b", "latest"),
        ] {
            let t = Tag::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((t.repo.as_str(), t.tag.as_str()), (repo, tag), "{input}");
        }
    }

    #[test]
    fn refuses_invalid_references_quoting_them() {
        let long_tag = format!("app:{}", "t".repeat(129));
        let long_name = "a".repeat(256);
        let hex = "0123456789abcdef".repeat(4);
        for input in [
            "",
            "App",
            "my app",
            "a:b:c",
            "app@sha256:abcd",
            "app:",
            ":tag",
            "app:-x",
            "app:.x",
            "a..b",
            "a_-b",
            "-a",
            "a-",
            "/a",
            "a/",
            "a//b",
            "host:port/app",
            long_tag.as_str(),
            long_name.as_str(),
            hex.as_str(),
            "app:t/x",
        ] {
            let err = Tag::parse(input).expect_err(input);
            assert!(err.contains(&format!("\"{input}\"")), "{err}");
        }
    }
}
