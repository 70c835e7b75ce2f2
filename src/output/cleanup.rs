//! What a sweep of dead runs' objects tells the user: before a run, one
//! line on stderr per owner whose objects were removed; for `--cleanup`,
//! the removed objects on stdout as `docker container prune` and `docker
//! image prune` list them (or one JSON document), and on stderr what was
//! kept and why.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Format, Reporter};
use crate::engine::sweep::{Found, Kind, Swept};
use crate::os::process::Liveness;

impl Reporter {
    /// Before a run: what the sweep removed, and what it could not.
    pub fn swept(&self, swept: &Swept) {
        for (owner, objects) in by_owner(swept.removed.iter()) {
            self.note(&format!(
                "Removed what an earlier run left ({owner}, which is gone): {objects}"
            ));
        }
        for line in failures(swept) {
            self.warn(&line);
        }
    }

    /// Before a run with `-o FILE`: the files that dead runs were writing
    /// beside FILE, removed.
    pub fn swept_files(&self, removed: &[std::path::PathBuf]) {
        if !removed.is_empty() {
            let files: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
            self.note(&format!(
                "Removed what earlier runs that are gone were writing: {}",
                files.join(", ")
            ));
        }
    }

    /// `--cleanup`: the removed objects on stdout, the rest on stderr.
    pub fn cleaned(&self, format: Format, swept: &Swept) {
        match format {
            Format::Json => self.json(&Document::of(swept)),
            Format::Text => {
                let mut out = String::new();
                for (kind, heading) in [
                    (Kind::Container, "Deleted Containers:"),
                    (Kind::Image, "Deleted Images:"),
                ] {
                    let ids: Vec<&str> = swept
                        .removed
                        .iter()
                        .filter(|f| f.kind == kind)
                        .map(|f| f.id.as_str())
                        .collect();
                    if !ids.is_empty() {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(heading);
                        out.push('\n');
                        for id in ids {
                            out.push_str(id);
                            out.push('\n');
                        }
                    }
                }
                if !out.is_empty() {
                    self.stdout(&out);
                }
            }
        }
        if swept.removed.is_empty() && swept.failed.is_empty() {
            self.note("Nothing to clean up: no temporary object of a run that is gone.");
        }
        for (owner, objects) in by_owner(swept.kept.iter()) {
            self.note(&format!("Kept {objects} of {owner}"));
        }
        for line in failures(swept) {
            self.warn(&line);
        }
    }
}

/// Objects grouped by owner, as `process 42 on host` → `container 1a2b3c4d5e6f, image …`.
fn by_owner<'a>(found: impl Iterator<Item = &'a Found>) -> BTreeMap<String, String> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in found {
        let owner = match (&f.owner, f.liveness) {
            (Some(owner), Liveness::Alive) => format!("{}, still running", owner.describe()),
            (Some(owner), Liveness::Elsewhere) => {
                format!("{}, which this client cannot check", owner.describe())
            }
            (Some(owner), Liveness::Gone) => owner.describe(),
            (None, _) => "an owner this version cannot read".into(),
        };
        groups.entry(owner).or_default().push(object(f));
    }
    groups
        .into_iter()
        .map(|(owner, objects)| (owner, objects.join(", ")))
        .collect()
}

fn object(f: &Found) -> String {
    let short = super::text::short_id(&f.id);
    match f.kind {
        Kind::Container => format!("container {short}"),
        Kind::Image => format!("image {short}"),
    }
}

fn failures(swept: &Swept) -> Vec<String> {
    swept
        .failed
        .iter()
        .map(|(f, error)| {
            let command = match f.kind {
                Kind::Container => format!("docker rm -fv {}", f.id),
                Kind::Image => format!("docker rmi {}", f.id),
            };
            format!(
                "cannot remove the {} an earlier run left: {error}; remove it with: {command}",
                object(f)
            )
        })
        .collect()
}

/// `--cleanup --format json`.
#[derive(Serialize)]
struct Document {
    removed: Vec<Entry>,
    kept: Vec<Entry>,
    failed: Vec<Entry>,
}

#[derive(Serialize)]
struct Entry {
    kind: &'static str,
    id: String,
    /// The owner label's value.
    owner: Option<String>,
}

impl Document {
    fn of(swept: &Swept) -> Document {
        let entries = |found: &mut dyn Iterator<Item = &Found>| {
            found
                .map(|f| Entry {
                    kind: match f.kind {
                        Kind::Container => "container",
                        Kind::Image => "image",
                    },
                    id: f.id.clone(),
                    owner: f.owner.as_ref().map(ToString::to_string),
                })
                .collect()
        };
        Document {
            removed: entries(&mut swept.removed.iter()),
            kept: entries(&mut swept.kept.iter()),
            failed: entries(&mut swept.failed.iter().map(|(f, _)| f)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::process::Owner;

    fn found(kind: Kind, id: &str, liveness: Liveness) -> Found {
        Found {
            kind,
            id: id.into(),
            owner: Owner::parse("host/b.1/42/7"),
            liveness,
        }
    }

    #[test]
    fn objects_are_grouped_by_their_owner_with_short_ids() {
        let removed = [
            found(Kind::Container, "0123456789abcdef", Liveness::Gone),
            found(Kind::Image, "sha256:fedcba9876543210", Liveness::Gone),
        ];
        let groups = by_owner(removed.iter());
        assert_eq!(
            groups.into_iter().collect::<Vec<_>>(),
            [(
                "process 42 on host".to_owned(),
                "container 0123456789ab, image fedcba987654".to_owned()
            )]
        );
        let kept = [found(Kind::Container, "c", Liveness::Alive)];
        assert_eq!(
            by_owner(kept.iter()).into_keys().collect::<Vec<_>>(),
            ["process 42 on host, still running"]
        );
    }
}
