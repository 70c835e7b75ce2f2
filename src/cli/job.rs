//! clap's structs lowered into one typed [`Job`] before anything runs (as
//! ripgrep lowers its low-level args into high-level ones, and fd its Opts
//! into a Config): the combinations clap cannot check are refused here,
//! and what runs never looks at clap's types again: the docker CLI's
//! global flags become the engine's [`Selection`].

use crate::cli::{FlattenArgs, Format, GlobalArgs};
use crate::engine::Selection;
use std::path::PathBuf;

use crate::flatten::{Keep, Request};
use crate::model::reference::Tag;
use crate::output;

/// One invocation of `flatten`, checked.
#[derive(Debug)]
pub struct Job {
    /// Which engine, as the docker CLI's global flags select it.
    pub engine: Selection,
    /// `-D`: print the whole cause chain of errors and the endpoint used.
    pub debug: bool,
    /// IMAGE; empty for `--cleanup`, which has none.
    pub image: String,
    /// `SOURCE_DATE_EPOCH`, read once here: the time a result says.
    pub epoch: Option<u64>,
    pub format: output::Format,
    pub mode: Mode,
}

#[derive(Debug)]
pub enum Mode {
    /// `--dry-run`: analyse IMAGE's layers; TAG only checked.
    DryRun {
        tag: Option<Tag>,
        /// `-i`: IMAGE is in this archive.
        input: Option<PathBuf>,
        /// `--platform`: only this platform of IMAGE.
        platform: Option<crate::model::platform::Platform>,
        /// `--keep-base`/`--keep-layers`: the savings of that partial flatten.
        keep: Option<Keep>,
    },
    Flatten(Request),
    /// `--cleanup`: remove what dead runs left; no IMAGE.
    Cleanup,
    /// `--verify-only`: compare `flat` with IMAGE's layers; change nothing.
    VerifyOnly {
        flat: Tag,
        /// Made by merging IMAGE's layers (a mode flag was given), not
        /// from an export.
        merged: bool,
    },
}

/// A combination of arguments that cannot work; nothing was done.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error(
        "-o - writes the image archive to stdout, which is a terminal: redirect it \
         (docker flatten -o - IMAGE TAG > FILE) or give a file (-o FILE)"
    )]
    ArchiveToTerminal,
    #[error(
        "-i - reads the image archive from stdin, which is a terminal: pipe it in \
         (docker save IMAGE | docker flatten -i - TAG) or give a file (-i FILE)"
    )]
    ArchiveFromTerminal,
    #[error(
        "-o - writes the image archive to stdout: it cannot carry --format json too; use -o FILE"
    )]
    JsonWithArchive,
    #[error("--verify reads the result back, which -o - cannot: use -o FILE")]
    VerifyStdout,
    #[error(
        "-o FILE names the image in the archive as IMAGE, but {0} is an image ID or digest: \
         give TAG, the name it should have (docker flatten -o FILE {0} app:flat)"
    )]
    ArchiveNeedsName(String),
    #[error("{0}: unset it, or give it as seconds since 1970 (date +%s)")]
    BadEpoch(crate::model::config::BadEpoch),
    /// IMAGE or BASE is no image reference; says which and why.
    #[error("{0}")]
    BadImage(String),
    #[error(
        "missing TAG: docker flatten -i FILE [IMAGE] TAG loads the flattened image into the \
         engine as TAG; or write it to a file with -o FILE"
    )]
    InputNeedsTag,
}

/// A standard stream that may be a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Std {
    In,
    Out,
}

/// Lowers the parsed command line; `is_terminal` is asked only for `-o -`
/// (stdout) and `-i -` (stdin).
pub fn lower(
    globals: GlobalArgs,
    args: FlattenArgs,
    is_terminal: impl Fn(Std) -> bool,
) -> Result<Job, ArgsError> {
    let from_stdin = args.input.as_deref().is_some_and(|i| i.as_os_str() == "-");
    if from_stdin && is_terminal(Std::In) {
        return Err(ArgsError::ArchiveFromTerminal);
    }
    let to_stdout = args.output.as_deref().is_some_and(|o| o.as_os_str() == "-");
    if to_stdout && args.format == Format::Json {
        return Err(ArgsError::JsonWithArchive);
    }
    if to_stdout && is_terminal(Std::Out) {
        return Err(ArgsError::ArchiveToTerminal);
    }
    if to_stdout && args.verify {
        return Err(ArgsError::VerifyStdout);
    }
    if let Some(base) = &args.keep_base {
        crate::model::reference::check_image(base).map_err(ArgsError::BadImage)?;
    }
    let (image, tag) = operands(&args)?;
    // An archive has no container to export: its layers are merged.
    let exact = args.exact || args.input.is_some();
    let keep = match (exact, args.keep_base, args.keep_layers) {
        (_, Some(base), _) => Some(Keep::Base(base)),
        (_, None, Some(n)) => Some(Keep::Layers(n)),
        (true, None, None) => Some(Keep::Layers(0)),
        (false, None, None) => None,
    };
    let epoch = crate::model::config::source_date_epoch().map_err(ArgsError::BadEpoch)?;
    if !(args.cleanup || args.input.is_some() && image.is_empty()) {
        crate::model::reference::check_image(&image).map_err(ArgsError::BadImage)?;
    }

    let mode = match (args.dry_run, tag) {
        _ if args.cleanup => Mode::Cleanup,
        (true, tag) => Mode::DryRun {
            tag,
            input: args.input,
            platform: args.platform,
            keep,
        },
        (false, Some(flat)) if args.verify_only => Mode::VerifyOnly {
            flat,
            merged: keep.is_some(),
        },
        (false, tag) => Mode::Flatten(Request {
            tag: match tag {
                Some(tag) => Some(tag),
                // Named, once read, as the archive names the image.
                None if args.input.is_some() && image.is_empty() => None,
                None if args.output.is_some() => Some(archive_name(&image)?),
                None => unreachable!("clap requires TAG without --dry-run, -o, -i or --cleanup"),
            },
            image: image.clone(),
            input: args.input,
            output: args.output,
            compression: args.compression.chosen(),
            force: args.force,
            platform: args.platform,
            merge: keep,
            verify: args.verify,
            epoch,
        }),
    };
    Ok(Job {
        debug: globals.debug,
        engine: selection(globals),
        image,
        epoch,
        format: match args.format {
            Format::Text => output::Format::Text,
            Format::Json => output::Format::Json,
        },
        mode,
    })
}

/// IMAGE and TAG as the operands give them. With `-i`, IMAGE comes only
/// with TAG (`-i FILE [[IMAGE] TAG]`): a lone operand is always TAG, so
/// that what it means never depends on what FILE holds.
fn operands(args: &FlattenArgs) -> Result<(String, Option<Tag>), ArgsError> {
    let (image, tag) = (args.image.clone(), args.tag.clone());
    let to_engine = !args.dry_run && args.output.is_none();
    match (&args.input, image, tag) {
        (Some(_), None, None) if to_engine => Err(ArgsError::InputNeedsTag),
        (Some(_), Some(lone), None) => Ok((
            String::new(),
            Some(Tag::parse(&lone).map_err(ArgsError::BadImage)?),
        )),
        (_, image, tag) => Ok((image.unwrap_or_default(), tag)),
    }
}

/// The name inside `-o`'s archive when no TAG is given: IMAGE's own, as
/// `docker save IMAGE` names what it saves (`app` is `app:latest`).
fn archive_name(image: &str) -> Result<Tag, ArgsError> {
    let named = image.split_once('@').map_or(image, |(name, _)| name);
    let is_id = crate::model::reference::is_id_prefix(named);
    if is_id || named.starts_with("sha256:") {
        return Err(ArgsError::ArchiveNeedsName(image.to_owned()));
    }
    Tag::parse(named).map_err(ArgsError::BadImage)
}

/// The global flags that select the engine.
fn selection(globals: GlobalArgs) -> Selection {
    Selection {
        config: globals.config,
        context: globals.context,
        host: globals.host,
        tls: globals.tls,
        tlsverify: globals.tlsverify,
        tlscacert: globals.tlscacert,
        tlscert: globals.tlscert,
        tlskey: globals.tlskey,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn job(args: &[&str], terminal: bool) -> Result<Job, ArgsError> {
        let cli =
            Cli::try_parse_from(std::iter::once("docker").chain(args.iter().copied())).unwrap();
        let Command::Flatten(f) = cli.command else {
            panic!("not flatten")
        };
        lower(cli.globals, *f, |_| terminal)
    }

    #[test]
    fn a_flatten_becomes_a_request() {
        let j = job(
            &[
                "-D",
                "flatten",
                "--compression",
                "zstd",
                "-o",
                "a.tar",
                "img",
                "app",
            ],
            true,
        )
        .unwrap();
        assert!(j.debug);
        let Mode::Flatten(r) = j.mode else {
            panic!("not a flatten")
        };
        assert_eq!(
            (r.image.as_str(), r.tag().to_string()),
            ("img", "app:latest".into())
        );
        assert_eq!(r.output.as_deref(), Some(std::path::Path::new("a.tar")));
        assert_eq!(
            r.compression,
            Some(crate::model::compression::Compression::Zstd)
        );
    }

    #[test]
    fn a_dry_run_keeps_its_optional_tag() {
        let j = job(&["flatten", "--dry-run", "-q", "img"], false).unwrap();
        assert!(matches!(
            j.mode,
            Mode::DryRun {
                tag: None,
                keep: None,
                ..
            }
        ));
    }

    #[test]
    fn an_image_that_is_no_reference_is_refused_before_any_work() {
        let said = job(&["flatten", "UXT-APP:1", "t"], false).unwrap_err();
        assert!(
            matches!(&said, ArgsError::BadImage(why) if why.contains("lowercase")),
            "{said}"
        );
        let said = job(&["flatten", "--keep-base", "Base", "app", "t"], false).unwrap_err();
        assert!(matches!(said, ArgsError::BadImage(_)));
        assert!(job(&["flatten", "bb217b5af6a5", "t"], false).is_ok());
    }

    #[test]
    fn an_archive_without_tag_names_the_image_as_image() {
        let name = |args: &[&str]| match job(args, false) {
            Ok(Job {
                mode: Mode::Flatten(r),
                ..
            }) => Ok(r.tag().to_string()),
            Ok(_) => panic!("not a flatten"),
            Err(e) => Err(e),
        };
        assert_eq!(
            name(&["flatten", "-o", "a.tar", "app:1.4"]),
            Ok("app:1.4".into())
        );
        assert_eq!(
            name(&["flatten", "-o", "a.tar", "app"]),
            Ok("app:latest".into())
        );
        assert_eq!(
            name(&[
                "flatten",
                "-o",
                "a.tar",
                "app:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            ]),
            Ok("app:1".into())
        );
        assert!(matches!(
            name(&["flatten", "-o", "a.tar", "bb217b5af6a5"]),
            Err(ArgsError::ArchiveNeedsName(_))
        ));
    }

    #[test]
    fn cleanup_needs_no_image_and_takes_no_flatten_flags() {
        let j = job(&["flatten", "--cleanup", "--format", "json"], false).unwrap();
        assert!(matches!(j.mode, Mode::Cleanup) && j.image.is_empty());
        for args in [
            &["flatten", "--cleanup", "img"][..],
            &["flatten", "--cleanup", "--exact"],
            &["flatten", "--cleanup", "-o", "a.tar"],
        ] {
            let parsed = Cli::try_parse_from(std::iter::once("docker").chain(args.iter().copied()));
            assert!(parsed.is_err(), "{args:?}");
        }
    }

    #[test]
    fn the_merge_modes_become_what_to_keep() {
        let keep = |args: &[&str]| match job(args, false).unwrap().mode {
            Mode::Flatten(r) => r.merge,
            Mode::DryRun { keep, .. } => keep,
            Mode::VerifyOnly { .. } | Mode::Cleanup => panic!("not a flatten or dry run"),
        };
        assert_eq!(keep(&["flatten", "img", "t"]), None);
        assert_eq!(
            keep(&["flatten", "--exact", "img", "t"]),
            Some(Keep::Layers(0))
        );
        assert_eq!(
            keep(&["flatten", "--keep-layers", "2", "img", "t"]),
            Some(Keep::Layers(2))
        );
        assert_eq!(
            keep(&["flatten", "--dry-run", "--keep-base", "b", "img"]),
            Some(Keep::Base("b".into()))
        );
        let both = Cli::try_parse_from([
            "docker",
            "flatten",
            "--exact",
            "--keep-layers",
            "1",
            "i",
            "t",
        ]);
        assert!(both.is_err(), "--exact and a keep mode exclude each other");
    }

    #[test]
    fn verify_reads_the_result_back_and_verify_only_changes_nothing() {
        let Mode::Flatten(r) = job(&["flatten", "--verify", "--exact", "i", "t"], false)
            .unwrap()
            .mode
        else {
            panic!("not a flatten")
        };
        assert!(r.verify && r.merge == Some(Keep::Layers(0)));
        assert_eq!(
            job(&["flatten", "--verify", "-o", "-", "i", "t"], false).unwrap_err(),
            ArgsError::VerifyStdout
        );
        let j = job(&["flatten", "--verify-only", "i", "flat"], false).unwrap();
        assert!(matches!(
            j.mode,
            Mode::VerifyOnly { ref flat, merged: false } if flat.to_string() == "flat:latest"
        ));
        let j = job(
            &["flatten", "--verify-only", "--keep-layers", "2", "i", "f"],
            false,
        );
        assert!(matches!(
            j.unwrap().mode,
            Mode::VerifyOnly { merged: true, .. }
        ));
        for args in [
            &["flatten", "--verify-only", "-o", "x.tar", "i", "f"][..],
            &["flatten", "--verify-only", "--verify", "i", "f"],
            &["flatten", "--verify-only", "--dry-run", "i", "f"],
            &["flatten", "--verify-only", "i"],
        ] {
            let parsed = Cli::try_parse_from(std::iter::once("docker").chain(args.iter().copied()));
            assert!(parsed.is_err(), "{args:?}");
        }
    }

    #[test]
    fn the_archive_goes_to_stdout_only_when_it_is_no_terminal() {
        assert!(job(&["flatten", "-o", "-", "img", "app"], false).is_ok());
        assert_eq!(
            job(&["flatten", "-o", "-", "img", "app"], true).unwrap_err(),
            ArgsError::ArchiveToTerminal
        );
        assert_eq!(
            job(
                &["flatten", "-o", "-", "--format=json", "img", "app"],
                false
            )
            .unwrap_err(),
            ArgsError::JsonWithArchive
        );
        // A file is no concern of stdout's.
        assert!(job(
            &["flatten", "-o", "a.tar", "--format=json", "img", "app"],
            true
        )
        .is_ok());
    }

    #[test]
    fn with_an_archive_a_lone_operand_is_tag_and_image_comes_only_with_it() {
        let flatten = |args: &[&str]| match job(args, false) {
            Ok(Job {
                mode: Mode::Flatten(r),
                ..
            }) => Ok((r.image, r.tag.map(|t| t.to_string()), r.merge)),
            Ok(_) => panic!("not a flatten"),
            Err(e) => Err(e),
        };
        let exact = Some(Keep::Layers(0));
        assert_eq!(
            flatten(&["flatten", "-i", "a.tar", "app:flat"]),
            Ok((String::new(), Some("app:flat".into()), exact.clone()))
        );
        assert_eq!(
            flatten(&["flatten", "-i", "a.tar", "-o", "o.tar", "app:flat"]),
            Ok((String::new(), Some("app:flat".into()), exact.clone()))
        );
        assert_eq!(
            flatten(&["flatten", "-i", "a.tar", "-o", "o.tar"]),
            Ok((String::new(), None, exact.clone()))
        );
        assert_eq!(
            flatten(&["flatten", "-i", "a.tar", "app:1", "app:flat"]),
            Ok(("app:1".into(), Some("app:flat".into()), exact))
        );
        assert_eq!(
            flatten(&["flatten", "-i", "a.tar"]).unwrap_err(),
            ArgsError::InputNeedsTag
        );
        let Ok(Job {
            mode: Mode::DryRun { tag, input, .. },
            image,
            ..
        }) = job(&["flatten", "--dry-run", "-i", "a.tar"], false)
        else {
            panic!("not a dry run")
        };
        assert_eq!(
            (image.as_str(), tag, input),
            ("", None, Some("a.tar".into()))
        );
        // stdin must be no terminal, which can hold no archive.
        assert_eq!(
            job(&["flatten", "-i", "-", "app:flat"], true).unwrap_err(),
            ArgsError::ArchiveFromTerminal
        );
        for conflict in [
            ["--keep-layers", "1"],
            ["--keep-base", "b"],
            ["--verify-only", "x"],
        ] {
            let args = [
                &["docker", "flatten", "-i", "a.tar"][..],
                &conflict,
                &["a", "b"],
            ]
            .concat();
            assert!(Cli::try_parse_from(args).is_err(), "{conflict:?}");
        }
    }
}
