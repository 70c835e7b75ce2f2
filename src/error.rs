//! The pipeline's errors: which [`Step`] failed, on which endpoint (named
//! once, here), and why ([`Cause`]). Each message is whole: it quotes its
//! cause (the engine's own words, the I/O error) and so returns no
//! `source()`, and the chain is printed once.

use std::fmt;
use std::path::PathBuf;

use crate::model::source_index::{ChoiceError, SourceIndex};

use bollard::errors::Error as EngineError;

use crate::encode::LayerError;
use crate::engine::detail;
use crate::engine::store::Store;
use crate::layers::MergeError;
use crate::model::compression::Refusal;
use crate::model::SourceImage;
use crate::saved::walk::{ArchiveError, IndexReadError, ReadError};
use crate::verify::Report;

/// What the pipeline was doing. Finer than the progress stages: several
/// steps run within one stage (an import, then its inspect), and some, such
/// as asking the engine which store it uses, before any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    ReadInfo,
    ReadVersion,
    Inspect(String),
    ReadConfig(String),
    Create(String),
    Export(String),
    Import(String),
    InspectImported,
    LoadConfig,
    Load,
    InspectResult,
    Tag(String),
    /// TAG checked against the engine's images before any work.
    Target(String),
    ReadLayers(String),
    /// Reading IMAGE's index and choosing what to flatten of it.
    ChoosePlatforms(String),
    /// The compressed layer into a temporary file.
    Spool(String),
    /// The archive into `--output`'s file, or stdout (`-`).
    Write(PathBuf),
    /// Working out which of IMAGE's layers a partial flatten keeps.
    Keep(String),
    /// IMAGE's layers, as they stream, into temporary files.
    SpoolLayers(String),
    /// Reading the flattened image back, to verify it (its ID or FILE).
    ReadResult(String),
    /// Comparing the flattened image with IMAGE's layers.
    Verify(String),
    /// Reading the archive given with `-i` (`-`: stdin), and choosing IMAGE in it.
    ReadInput(PathBuf),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::ReadInfo => f.write_str("reading engine info"),
            Step::ReadVersion => f.write_str("reading the engine version"),
            Step::Inspect(image) => write!(f, "inspecting image {image}"),
            Step::ReadConfig(image) => write!(f, "reading the config of {image}"),
            Step::Create(image) => write!(f, "creating a container from {image}"),
            Step::Export(image) => write!(f, "exporting the filesystem of {image}"),
            Step::Import(image) => write!(f, "importing the filesystem of {image}"),
            Step::InspectImported => f.write_str("inspecting the imported layer"),
            Step::LoadConfig => f.write_str("loading the flattened image's config"),
            Step::Load => f.write_str("loading the flattened image"),
            Step::InspectResult => f.write_str("inspecting the flattened image"),
            Step::Tag(tag) => write!(f, "tagging {tag}"),
            Step::Target(tag) => write!(f, "naming the result {tag}"),
            Step::ReadLayers(image) => write!(f, "reading the layers of {image}"),
            Step::ChoosePlatforms(image) => write!(f, "choosing the platforms of {image}"),
            Step::Spool(image) => write!(
                f,
                "writing the flattened layer of {image} to a temporary file"
            ),
            Step::Write(path) if path.as_os_str() == "-" => {
                f.write_str("writing the image archive to stdout")
            }
            Step::Write(path) => write!(f, "writing the image archive {}", path.display()),
            Step::Keep(image) => write!(f, "keeping the bottom layers of {image}"),
            Step::SpoolLayers(image) => {
                write!(f, "writing the layers of {image} to temporary files")
            }
            Step::ReadResult(what) => write!(f, "reading the flattened image {what} back"),
            Step::ReadInput(path) if path.as_os_str() == "-" => {
                f.write_str("reading the image archive on stdin")
            }
            Step::ReadInput(path) => write!(f, "reading the image archive {}", path.display()),
            Step::Verify(image) => {
                write!(
                    f,
                    "verifying the flattened image against the layers of {image}"
                )
            }
        }
    }
}

/// Why a step failed.
#[derive(Debug)]
pub enum Cause {
    /// The engine refused, or the connection broke.
    Engine(EngineError),
    /// The engine (or a file it wrote) answered, but not as it should have.
    Unexpected(Unexpected),
    /// IMAGE does not exist (the step is [`Step::Inspect`]).
    NoSuchImage(String),
    /// IMAGE is no image reference: the engine answered 400.
    BadReference { image: String, error: EngineError },
    /// The compression asked for does not suit the engine.
    Unsupported(Refusal),
    /// The layer did not stream whole (the step is [`Step::Export`]).
    Layer(LayerError),
    /// IMAGE lacks what was asked of its platforms.
    Platforms(Box<crate::model::source_index::ChoiceError>),
    /// What was asked cannot be done with this image; nothing was.
    Refused(String),
    /// The engine failed to save IMAGE, which `--exact` and the keep modes
    /// read (the step is [`Step::ReadLayers`]).
    Unsaveable(EngineError),
    /// Writing on this machine failed: a temporary file, `--output`.
    Local {
        /// The directory that needs room, or cannot be written.
        dir: PathBuf,
        error: std::io::Error,
    },
    /// The flattened image is not what IMAGE's layers make (the step is
    /// [`Step::Verify`]).
    Differs(Box<Differs>),
    /// The engine failed to save IMAGE, which `--verify` compares with
    /// (the step is [`Step::Verify`]).
    Unverifiable(EngineError),
    /// The engine has IMAGE's manifest but not all the blobs it names: it
    /// reports no config and saves the manifest alone (moby#49473).
    Incomplete(Box<Incomplete>),
    /// The archive given with `-i` cannot be flattened as asked (the step
    /// is [`Step::ReadInput`]).
    Input(InputError),
    /// A run that started before IMAGE's plan was read found IMAGE to be no
    /// one-manifest image after all, or could not tell: what the read of its
    /// save stream gave, for the run that starts again from it. The
    /// pipeline never lets it reach the user.
    Replan(Box<Result<SourceIndex, IndexReadError>>),
}

/// What is wrong with the archive given with `-i`, or with IMAGE's name
/// for an image in it. Each shows its cause in its message.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Open(crate::saved::input::OpenError),
    #[error(
        "{0}; it is no whole image archive: write it again (docker save -o FILE IMAGE, \
         skopeo copy … oci-archive:FILE)"
    )]
    NotWhole(ReadError<MergeError>),
    #[error(
        "blob {0} is not an image manifest or index whose config and layers are all in the \
         archive; write it again, with every platform's content"
    )]
    Incomplete(String),
    #[error(
        "it holds {} images ({}): name the one to flatten \
         (docker flatten -i FILE IMAGE TAG)",
        .0.len(), .0.join(", ")
    )]
    Several(Vec<String>),
    #[error("it holds no image {image}; it holds {}", .held.join(", "))]
    NoSuch { image: String, held: Vec<String> },
    #[error(
        "the image in it has no name for the archive -o writes: give TAG, the name it \
         should have (docker flatten -i FILE -o OUT IMAGE TAG)"
    )]
    Unnamed,
}

/// What [`Cause::Incomplete`] found.
#[derive(Debug)]
pub struct Incomplete {
    pub image: String,
    /// IMAGE's manifest, where the engine names it.
    pub manifest: Option<String>,
    /// The blobs the manifest names that the engine's save left out (all
    /// of them, when one is missing from its content store): what each is
    /// (`config`, `layer 2 of 3`) and its digest. Empty when the save could
    /// not be read either.
    pub missing: Vec<(String, String)>,
}

/// What was wrong with an answer: each says what was found, and shows
/// its own cause in its message (none is returned from `source()`).
#[derive(Debug, thiserror::Error)]
pub enum Unexpected {
    #[error("no image ID in the response")]
    NoImageId,
    #[error("expected the one layer {expected}, the engine has {found:?}")]
    ImportedLayers {
        expected: String,
        found: Vec<String>,
    },
    #[error("its save stream holds no config for its layers and platform ({0})")]
    NoConfig(String),
    #[error("its save stream is not a valid archive: {0}")]
    Archive(ArchiveError),
    /// IMAGE's save stream, read for its layers.
    #[error("its save stream is not a whole image: {0}")]
    NotWhole(ReadError<MergeError>),
    /// A save stream or file read back, whole or not.
    #[error("{0}")]
    Read(ReadError<MergeError>),
    #[error("{0}")]
    Index(IndexReadError),
    /// Layers that the engine's rules cannot apply.
    #[error("{0}")]
    Layers(MergeError),
    #[error("{0}")]
    Io(std::io::Error),
}

/// A verify's differences, and what it compared.
#[derive(Debug)]
pub struct Differs {
    pub report: Report,
    pub source: SourceImage,
    pub store: Option<Store>,
}

/// A failed run of the pipeline.
#[derive(Debug)]
pub struct Error {
    pub step: Step,
    /// The engine's address, as the user knows it.
    pub endpoint: String,
    pub cause: Cause,
}

impl std::error::Error for Error {}

impl Error {
    /// The exit code: 2 when the command cannot work as given and nothing
    /// was done (an IMAGE that is no reference, an option that IMAGE or the
    /// engine refuses before any work), 1 for a run that failed.
    pub fn exit_code(&self) -> u8 {
        match &self.cause {
            Cause::BadReference { .. } | Cause::Refused(_) | Cause::Unsupported(_) => 2,
            Cause::Input(
                InputError::Several(_) | InputError::NoSuch { .. } | InputError::Unnamed,
            ) => 2,
            // A --platform IMAGE lacks, or a choice only --platform makes; a
            // platform whose content the store lacks is the store's to fix.
            Cause::Platforms(choice) => match **choice {
                ChoiceError::NotOffered(_) | ChoiceError::Ambiguous { .. } => 2,
                ChoiceError::Absent { .. } | ChoiceError::NothingPresent { .. } => 1,
            },
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Error {
            step,
            endpoint,
            cause,
        } = self;
        match cause {
            Cause::Engine(e) => write!(f, "{step} failed on {endpoint}: {}", detail(e)),
            Cause::Input(e) => write!(f, "{step} failed: {e}"),
            Cause::Replan(_) => write!(
                f,
                "{step} on {endpoint} found IMAGE to be other than its inspect said; run again"
            ),
            Cause::Unexpected(what) => {
                write!(f, "{step} on {endpoint} gave an unexpected answer: {what}")
            }
            Cause::NoSuchImage(image) => write!(
                f,
                "no such image \"{image}\" on {endpoint}: build or pull it first (docker pull {image})"
            ),
            Cause::BadReference { image, error } => write!(
                f,
                "\"{image}\" is not an image reference ({}): give IMAGE as name[:tag], \
                 name@digest or an image ID, in lowercase",
                detail(error)
            ),
            Cause::Unsupported(r) => write!(
                f,
                "--compression {} cannot be used with {} at {endpoint}: {}; use {}",
                r.mode, r.engine, r.why, r.instead
            ),
            Cause::Layer(e) => write!(f, "{step} from {endpoint} failed: {e}"),
            Cause::Platforms(e) => write!(f, "{step} on {endpoint}: {e}"),
            Cause::Refused(why) => write!(f, "{step} on {endpoint} is not possible: {why}"),
            Cause::Incomplete(i) => {
                let left_out = i
                    .missing
                    .iter()
                    .map(|(what, digest)| format!("{what} {digest}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let what = match (&i.manifest, left_out.is_empty()) {
                    (Some(m), true) => format!(
                        "the engine has the manifest of {} ({m}) but not all the content it \
                         names: it reports no config",
                        i.image
                    ),
                    (Some(m), false) => format!(
                        "the engine has the manifest of {} ({m}) but not all the content it \
                         names: it saves it without {left_out}",
                        i.image
                    ),
                    (None, _) => format!(
                        "the engine saves {} without {left_out}: its content store lacks part \
                         of the image",
                        i.image
                    ),
                };
                write!(
                    f,
                    "{step} on {endpoint}: {what} (moby#49473); pull or load {} again, or \
                     rebuild it, then flatten",
                    i.image
                )
            }
            Cause::Unsaveable(e) => write!(
                f,
                "{step} failed on {endpoint}: {}; the engine cannot save this image (docker save \
                 fails the same way), and --exact, --keep-base and --keep-layers read what it \
                 saves. Engine 20.10 on fuse-overlayfs fails so on an image with a layer that \
                 deletes a path and creates it again; flatten without those flags, knowing that \
                 this engine's export can lose such a path too (--verify, which reads the same \
                 save, cannot check it here)",
                detail(e)
            ),
            Cause::Unverifiable(e) => write!(
                f,
                "{step} failed on {endpoint}: {}; the engine cannot save that image (docker save \
                 fails the same way), and --verify compares the result with what it saves. \
                 Engine 20.10 on fuse-overlayfs fails so on an image with a layer that deletes a \
                 path and creates it again, and its export of such an image lacks that path: \
                 the result could not be proved whole",
                detail(e)
            ),
            Cause::Differs(differs) => {
                let n = differs.report.differences.len();
                write!(
                    f,
                    "{step} on {endpoint} found {n} difference{} that the mode does not account \
                     for (--format json lists them all):\n{}",
                    if n == 1 { "" } else { "s" },
                    differs.report.first(FIRST_DIFFERENCES)
                )
            }
            Cause::Local { dir, error } => match step {
                Step::SpoolLayers(_) => write!(
                    f,
                    "{step} in {} failed: {error}; free space there, or set {} to a \
                     directory with room for the uncompressed layers",
                    dir.display(),
                    crate::os::env::TEMP_DIR
                ),
                Step::Spool(_) => write!(
                    f,
                    "{step} in {} failed: {error}; free space there, or set {} to a \
                     directory with room for the compressed layer",
                    dir.display(),
                    crate::os::env::TEMP_DIR
                ),
                Step::Write(path) if path.as_os_str() == "-" => write!(f, "{step} failed: {error}"),
                // The file's directory is missing (and the file is not created).
                Step::Write(_) if error.kind() == std::io::ErrorKind::NotFound && !dir.is_dir() => {
                    write!(
                        f,
                        "{step} failed: directory {} does not exist; create it, or give -o a \
                         file in a directory that does",
                        dir.display()
                    )
                }
                _ => write!(
                    f,
                    "{step} failed: {error}; it needs a directory it can write, with room for \
                     the compressed image ({})",
                    dir.display()
                ),
            },
        }
    }
}

/// How many differences an error names; the rest are counted.
const FIRST_DIFFERENCES: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn error(step: Step, cause: Cause) -> Error {
        Error {
            step,
            endpoint: "unix:///e.sock".into(),
            cause,
        }
    }

    #[test]
    fn messages_name_the_step_and_the_endpoint_and_quote_the_cause() {
        let refused = EngineError::DockerResponseServerError {
            status_code: 500,
            message: "no space left on device\n".into(),
        };
        let e = error(Step::Tag("app:flat".into()), Cause::Engine(refused));
        assert_eq!(
            e.to_string(),
            "tagging app:flat failed on unix:///e.sock: no space left on device"
        );
        crate::output::assert_causes_said_once(&e);
        let e = error(
            Step::Inspect("app:1".into()),
            Cause::NoSuchImage("app:1".into()),
        );
        assert_eq!(
            e.to_string(),
            "no such image \"app:1\" on unix:///e.sock: build or pull it first (docker pull app:1)"
        );
        let full = || std::io::Error::from_raw_os_error(28);
        let e = error(
            Step::Spool("app:1".into()),
            Cause::Local {
                dir: "/tmp".into(),
                error: full(),
            },
        );
        let said = e.to_string();
        assert!(
            said.starts_with("writing the flattened layer of app:1 to a temporary file in /tmp failed: No space left on device")
                && said.contains("set TMPDIR"),
            "{said}"
        );
        let e = error(
            Step::Write("out/app.tar".into()),
            Cause::Local {
                dir: "out".into(),
                error: full(),
            },
        );
        assert!(
            e.to_string()
                .starts_with("writing the image archive out/app.tar failed: No space left"),
            "{e}"
        );
    }
}
