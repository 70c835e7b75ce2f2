//! The flattened image between its load and its tag, noted on the client.
//! A loaded image carries IMAGE's config and nothing of the run (no label
//! finds it), so a run that is killed after the engine has loaded it and
//! before it is tagged would leave an untagged `<none>` image that no later
//! run could tell from any other. While the run holds such an image, a file
//! in `<docker config dir>/flatten/pending/` names it, with the run's owner
//! and the engine's ID (`docker info`: the same through a socket, a proxy or
//! a context); the next run on this client with the same engine removes the
//! image if the owner is gone and nothing tagged it.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::os::process::{Liveness, Owner};

/// Where a run notes its untagged image.
#[derive(Debug, Clone)]
pub struct Pending {
    dir: PathBuf,
    /// The engine's ID, as `docker info` gives it.
    engine: String,
}

/// One file's content.
#[derive(Debug, Serialize, Deserialize)]
struct Note {
    owner: String,
    engine: String,
    image: String,
}

/// An untagged image that a dead run left.
#[derive(Debug)]
pub struct Left {
    pub file: PathBuf,
    pub owner: Owner,
    pub image: String,
}

impl Pending {
    /// Notes go in `config_dir`/flatten/pending, for the engine `engine`.
    pub fn new(config_dir: &Path, engine: &str) -> Pending {
        Pending {
            dir: config_dir.join("flatten").join("pending"),
            engine: engine.to_owned(),
        }
    }

    /// Notes that run `run` holds `image` untagged (`None`: no longer).
    pub fn note(&self, run: &str, owner: &Owner, image: Option<&str>) -> io::Result<()> {
        let file = self.dir.join(format!("{run}.json"));
        match image {
            Some(image) => {
                std::fs::create_dir_all(&self.dir)?;
                let note = Note {
                    owner: owner.to_string(),
                    engine: self.engine.clone(),
                    image: image.to_owned(),
                };
                let json = serde_json::to_vec(&note).expect("a note serializes");
                // Whole or not at all: a rename over the final name.
                let temp = self.dir.join(format!(".{run}.json.tmp"));
                std::fs::write(&temp, json)?;
                std::fs::rename(&temp, &file)
            }
            None => match std::fs::remove_file(&file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// The images that runs now gone left untagged on this engine.
    pub fn left(&self) -> Vec<Left> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| {
                let note: Note = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                let owner = Owner::parse(&note.owner)?;
                (note.engine == self.engine && owner.liveness() == Liveness::Gone).then(|| Left {
                    file: e.path(),
                    owner,
                    image: note.image,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_names_the_image_until_it_is_tagged_and_only_a_dead_runs_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let pending = Pending::new(dir.path(), "ENGINE-A");
        let me = Owner::me();
        pending.note("run1", &me, Some("sha256:a")).unwrap();
        let file = dir.path().join("flatten/pending/run1.json");
        assert!(file.exists());
        // A live owner's image is not left.
        assert!(pending.left().is_empty());
        // A gone owner's is, on the same engine only.
        let gone = Owner::parse(&me.to_string().replacen(
            &format!("/{}/", std::process::id()),
            "/4194303/",
            1,
        ))
        .unwrap();
        pending.note("run2", &gone, Some("sha256:b")).unwrap();
        let left = pending.left();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].image, "sha256:b");
        assert!(Pending::new(dir.path(), "ENGINE-B").left().is_empty());
        pending.note("run1", &me, None).unwrap();
        assert!(!file.exists());
        pending.note("run1", &me, None).unwrap();
    }
}
