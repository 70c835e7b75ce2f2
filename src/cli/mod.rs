//! Command-line definition: the docker CLI's global flags (which it passes
//! through to plugins unchanged, before the subcommand) and the `flatten`
//! subcommand. The doc comments below are the help text.

pub mod complete;
pub mod job;
pub mod metadata;

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::model::platform::Platform;
use crate::model::reference::Tag;

/// Flatten a multi-layer Docker image into a one-layer image.
///
/// Installed as a Docker CLI plugin this runs as `docker flatten IMAGE TAG`;
/// run directly it takes the same arguments as `docker-flatten flatten IMAGE TAG`.
#[derive(Debug, Parser)]
#[command(
    name = "docker",
    bin_name = "docker",
    version,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub globals: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// The docker CLI's global flags. The CLI hands them to the plugin in argv,
/// in whatever spelling the user typed, so every one of them must parse.
#[derive(Debug, Default, Args)]
pub struct GlobalArgs {
    /// Location of client config files
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,

    /// Name of the context to use to connect to the daemon
    #[arg(short = 'c', long, value_name = "NAME")]
    pub context: Option<String>,

    /// Enable debug mode: print the whole cause chain of errors and the endpoint used
    #[arg(short = 'D', long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub debug: bool,

    /// Daemon socket to connect to
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    pub host: Vec<String>,

    /// Set the logging level
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL",
          value_parser = ["debug", "info", "warn", "error", "fatal"])]
    pub log_level: Option<String>,

    /// Use TLS; implied by --tlsverify
    #[arg(long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub tls: bool,

    /// Use TLS and verify the remote
    #[arg(long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = ArgAction::Set)]
    pub tlsverify: Option<bool>,

    /// Trust certs signed only by this CA
    #[arg(long, value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,

    /// Path to TLS certificate file
    #[arg(long, value_name = "FILE")]
    pub tlscert: Option<PathBuf>,

    /// Path to TLS key file
    #[arg(long, value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Flatten an image into a single layer
    ///
    /// Creates (never starts) a container from IMAGE, streams its filesystem
    /// export into a new one-layer image, and gives it IMAGE's whole config
    /// and platform. Prints the new image ID on stdout. An IMAGE that already
    /// has one layer is not rebuilt unless --force: TAG just points at it.
    #[command(
        override_usage = "docker flatten [OPTIONS] IMAGE TAG\n       \
                                docker flatten --dry-run [OPTIONS] IMAGE [TAG]\n       \
                                docker flatten -o FILE [OPTIONS] IMAGE [TAG]\n       \
                                docker flatten -i FILE [OPTIONS] [IMAGE] TAG\n       \
                                docker flatten -i FILE -o OUT [OPTIONS] [[IMAGE] TAG]\n       \
                                docker flatten --verify-only [OPTIONS] IMAGE FLAT\n       \
                                docker flatten --cleanup [--format FORMAT]",
        disable_help_flag = true
    )]
    Flatten(Box<FlattenArgs>),

    /// Print the Docker CLI plugin metadata (used by the docker CLI)
    #[command(name = crate::cli::metadata::SUBCOMMAND, hide = true)]
    Metadata,
}

#[derive(Debug, Args)]
pub struct FlattenArgs {
    /// Image to flatten: name[:tag], name@digest, or an image ID. With -i, the image in FILE (one
    /// of its names there, its digest or ID), given only with TAG and needed only when FILE holds
    /// several images
    #[arg(value_name = "IMAGE", required_unless_present_any = ["cleanup", "input"])]
    pub image: Option<String>,

    /// Name for the flattened image: name[:tag] (tag defaults to "latest"); may equal IMAGE.
    /// Optional with --dry-run, and with -o (the archive names the image as IMAGE, as docker save
    /// does); with --verify-only, the flattened image to check (FLAT)
    #[arg(value_name = "TAG", value_parser = Tag::parse, required_unless_present_any = ["dry_run", "cleanup", "output", "input"])]
    pub tag: Option<Tag>,

    /// Read IMAGE from an image archive instead of the engine ("-": stdin)
    ///
    /// FILE is what `docker save` writes, or an OCI image layout as a tar
    /// (`docker buildx build --output type=oci`, `skopeo copy ...
    /// oci-archive:FILE`) or as a directory. Its layers are merged as
    /// --exact merges them. IMAGE comes only with TAG: `docker flatten -i
    /// FILE [IMAGE] TAG` loads the result into the engine as TAG; `docker
    /// flatten -i FILE -o OUT [[IMAGE] TAG]` and --dry-run ask no engine
    /// anything, and without TAG the archive names the image as FILE does.
    #[arg(short = 'i', long = "input", value_name = "FILE", conflicts_with_all = ["verify_only", "keep_base", "keep_layers", "force"])]
    pub input: Option<PathBuf>,

    /// Report what flattening would save, layer by layer, without changing anything
    ///
    /// Reads IMAGE's layers as the engine streams them (nothing is written to
    /// disk or created on the engine) and reports each layer's size, the bytes
    /// wasted by files that later layers delete or overwrite, and the largest
    /// of those files.
    #[arg(long)]
    pub dry_run: bool,

    /// Output format: "text" for people, "json" for one JSON object on stdout
    #[arg(long, value_enum, default_value_t = Format::Text, value_name = "FORMAT")]
    pub format: Format,

    /// Write the flattened image to FILE instead of the engine ("-": stdout)
    ///
    /// An OCI image archive, as `docker save` writes it, that `docker load`
    /// takes on every engine; TAG is the name inside it, and nothing is
    /// tagged or left on the engine. FILE is replaced only once it is whole.
    /// Takes --exact but not --keep-base or --keep-layers: an archive that
    /// keeps layers would have to carry them too.
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["dry_run", "keep_base", "keep_layers"])]
    pub output: Option<PathBuf>,

    /// How the layer is compressed for the engine or the file
    #[arg(long, value_enum, value_name = "MODE", default_value_t = CompressionArg::Auto)]
    pub compression: CompressionArg,

    /// Rebuild IMAGE even when it already has one layer (otherwise TAG just points at IMAGE)
    #[arg(long)]
    pub force: bool,

    /// Flatten only this platform of IMAGE: os/arch[/variant], as for docker's --platform
    ///
    /// By default every platform of a multi-platform IMAGE whose content the
    /// engine has is flattened, each on its own, into one multi-platform
    /// TAG. With --platform, TAG is that platform alone. Matched as the
    /// engine does: linux/arm64 is linux/arm64/v8, linux/arm is linux/arm/v7.
    #[arg(long, value_name = "PLATFORM", value_parser = Platform::parse)]
    pub platform: Option<Platform>,
    /// Merge IMAGE's own layers instead of exporting a container
    ///
    /// Reads IMAGE's layers as `docker save` streams them (each into an
    /// unnamed file in TMPDIR) and merges them as the engine applies them:
    /// every file as IMAGE has it, /etc/hosts and the other paths a
    /// container's export fakes included, with every xattr and mtime. No
    /// container is created.
    #[arg(long, conflicts_with_all = ["keep_base", "keep_layers"])]
    pub exact: bool,

    /// Keep the layers of BASE (an image IMAGE is built on) as they are and merge only IMAGE's
    /// layers above them
    ///
    /// The result shares BASE's layers, so pulls reuse a cached BASE. Refused
    /// unless BASE's layers are the bottom layers of IMAGE.
    #[arg(long, value_name = "BASE", conflicts_with = "keep_layers")]
    pub keep_base: Option<String>,

    /// Keep IMAGE's bottom N layers as they are and merge the layers above them into one
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = layer_count)]
    pub keep_layers: Option<usize>,

    /// Read the result back and compare it with IMAGE's layers before TAG moves
    ///
    /// Path by path: type, mode, owner, mtime, size, content, link target,
    /// device numbers, xattrs and hardlinks; then the config and platform.
    /// What the mode documents as lost (the default mode's placeholder paths,
    /// xattrs but security.capability, the mtimes of /etc and /dev) is listed
    /// as expected; any other difference fails the run and leaves TAG (or
    /// FILE) as it was. Not with -o - (stdout cannot be read back).
    #[arg(long, conflicts_with_all = ["dry_run", "verify_only"])]
    pub verify: bool,

    /// Only compare FLAT, flattened earlier, with IMAGE's layers; nothing is changed
    ///
    /// `docker flatten --verify-only IMAGE FLAT` reads both images as
    /// `docker save` streams them. --exact, --keep-base or --keep-layers say
    /// that FLAT was made by merging IMAGE's layers (nothing is expected to
    /// differ); without them, the default mode's losses are expected. Exits
    /// 1 when anything else differs.
    #[arg(long, conflicts_with_all = ["dry_run", "output", "force"])]
    pub verify_only: bool,

    /// Remove what runs that were killed left on the engine, list it, and exit
    ///
    /// Every run does this first, without the flag: a temporary container
    /// or image whose run was on this host and has ended (killed, out of
    /// memory, a power loss) is removed. Objects of a run still going, or of
    /// another client, are kept and listed on stderr.
    #[arg(long, conflicts_with_all = [
        "image", "tag", "input", "dry_run", "output", "force", "platform", "exact",
        "keep_base", "keep_layers", "verify", "verify_only",
    ])]
    pub cleanup: bool,

    /// Only print the new image ID (with --dry-run: only the totals)
    #[arg(short, long)]
    pub quiet: bool,

    /// Print help
    #[arg(short = 'h', long, action = clap::ArgAction::HelpLong)]
    pub help: Option<bool>,
}

/// `--keep-layers N`: a count, so that `-1` is refused for what it is
/// rather than taken for a flag.
fn layer_count(value: &str) -> Result<usize, String> {
    value
        .parse()
        .map_err(|_| "a number of layers: 0 or more".to_owned())
}

/// A command line clap refused, said as docker's own commands say it: the
/// plugin's prefix, the reason, and where the help is (`See 'docker
/// flatten --help'.`) and the usage; clap's `error:` and its tips (`use '-- -1'`, which
/// cannot work for a flag's value) are not the docker CLI's voice.
pub fn usage_error(e: &clap::Error, verify_only: bool) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(", "),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    // `<TAG>`, `--keep-layers <N>`: the help's names, without clap's marks.
    let bare = |s: String| s.replace(['<', '>', '[', ']'], "");
    let mut arg = bare(context(ContextKind::InvalidArg));
    // With --verify-only the second operand is FLAT, the image to check.
    if verify_only && arg.contains("TAG") {
        arg = arg.replace("TAG", "FLAT");
    }
    let why = match e.kind() {
        ErrorKind::UnknownArgument => format!("unknown flag: {arg}"),
        ErrorKind::MissingRequiredArgument => format!("missing {arg}"),
        ErrorKind::ArgumentConflict => {
            format!(
                "{arg} cannot be used with {}",
                bare(context(ContextKind::PriorArg))
            )
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let value = context(ContextKind::InvalidValue);
            let reason = std::error::Error::source(e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            let valid = context(ContextKind::ValidValue);
            let valid = if valid.is_empty() {
                String::new()
            } else {
                format!(" (one of: {valid})")
            };
            format!("invalid value '{value}' for {arg}{reason}{valid}")
        }
        kind => format!(
            "{kind}{}",
            if arg.is_empty() {
                String::new()
            } else {
                format!(": {arg}")
            }
        ),
    };
    let mut command = <Cli as clap::CommandFactory>::command();
    let usage = command
        .find_subcommand_mut("flatten")
        .map(|flatten| flatten.render_usage().to_string())
        .unwrap_or_default();
    format!("docker flatten: {why}\nSee 'docker flatten --help'.\n\n{usage}")
}

/// What stdout carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The image ID (or the dry-run report) as text
    Text,
    /// One JSON object describing the run; docs/json.md lists its fields
    Json,
}

/// Values of `--compression`; the doc comments are their help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// none on a graphdriver engine, gzip on the containerd image store and in a file
    Auto,
    /// a plain tar (graphdriver engines and files only: the containerd store would keep and push it uncompressed)
    None,
    /// parallel gzip on every core: readable by every engine and registry
    Gzip,
    /// multithreaded zstd, level 1: every engine that pulls the image needs Engine 23+ (containerd 1.5+)
    Zstd,
}

impl CompressionArg {
    /// `None` for auto: the engine's image store decides.
    pub fn chosen(self) -> Option<crate::model::compression::Compression> {
        use crate::model::compression::Compression;
        match self {
            CompressionArg::Auto => None,
            CompressionArg::None => Some(Compression::None),
            CompressionArg::Gzip => Some(Compression::Gzip),
            CompressionArg::Zstd => Some(Compression::Zstd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("docker-flatten").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn accepts_every_global_flag_spelling_before_the_subcommand() {
        let cli = parse(&[
            "-Hunix:///a.sock",
            "--host=tcp://h:1",
            "-H",
            "tcp://h:2",
            "--config=/cfg",
            "-c",
            "ctx",
            "-D",
            "-l",
            "warn",
            "--tls",
            "--tlsverify=false",
            "--tlscacert",
            "ca",
            "--tlscert=c",
            "--tlskey",
            "k",
            "flatten",
            "img",
            "repo:tag",
        ])
        .unwrap();
        let g = cli.globals;
        assert_eq!(g.host, ["unix:///a.sock", "tcp://h:1", "tcp://h:2"]);
        assert_eq!(g.config.as_deref(), Some(std::path::Path::new("/cfg")));
        assert_eq!(g.context.as_deref(), Some("ctx"));
        assert!(g.debug && g.tls);
        assert_eq!(g.tlsverify, Some(false));
        assert_eq!(g.log_level.as_deref(), Some("warn"));
        let Command::Flatten(f) = cli.command else {
            panic!("not flatten")
        };
        assert_eq!(f.image.as_deref(), Some("img"));
        assert_eq!(f.tag.unwrap().to_string(), "repo:tag");
        assert_eq!(f.format, Format::Text);
        assert!(!f.dry_run);
    }

    #[test]
    fn compression_defaults_to_auto_and_takes_every_mode() {
        let Command::Flatten(f) = parse(&["flatten", "a", "b"]).unwrap().command else {
            panic!("not flatten")
        };
        assert_eq!((f.compression, f.force), (CompressionArg::Auto, false));
        for (word, mode) in [
            ("none", CompressionArg::None),
            ("gzip", CompressionArg::Gzip),
            ("zstd", CompressionArg::Zstd),
        ] {
            let cli = parse(&["flatten", "--compression", word, "--force", "a", "b"]).unwrap();
            let Command::Flatten(f) = cli.command else {
                panic!("not flatten")
            };
            assert_eq!((f.compression, f.force), (mode, true));
        }
        assert_eq!(
            parse(&["flatten", "--compression=xz", "a", "b"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn output_takes_a_file_or_stdout_but_not_a_dry_run() {
        for (args, want) in [
            (&["flatten", "-o", "app.tar", "a", "b"][..], "app.tar"),
            (&["flatten", "--output=-", "a", "b"], "-"),
            (&["flatten", "a", "b", "-o-"], "-"),
        ] {
            let Command::Flatten(f) = parse(args).unwrap().command else {
                panic!("not flatten")
            };
            assert_eq!(f.output.as_deref(), Some(std::path::Path::new(want)));
        }
        let err = parse(&["flatten", "--dry-run", "-o", "x.tar", "a"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        for keep in [&["--keep-layers", "1"][..], &["--keep-base", "base"]] {
            let args = [&["flatten", "-o", "x.tar"][..], keep, &["a", "b"]].concat();
            assert_eq!(parse(&args).unwrap_err().exit_code(), 2, "{args:?}");
        }
        assert!(parse(&["flatten", "--exact", "-o", "x.tar", "a", "b"]).is_ok());
        // The archive names the image as IMAGE when TAG is left out.
        assert!(parse(&["flatten", "-o", "x.tar", "a"]).is_ok());
    }

    #[test]
    fn bool_flags_take_explicit_values() {
        let cli = parse(&["--debug=false", "--tls=true", "flatten", "a", "b"]).unwrap();
        assert!(!cli.globals.debug);
        assert!(cli.globals.tls);
    }

    #[test]
    fn dry_run_makes_tag_optional() {
        let cli = parse(&["flatten", "--dry-run", "img", "--format=json"]).unwrap();
        let Command::Flatten(f) = cli.command else {
            panic!("not flatten")
        };
        assert!(f.dry_run && f.tag.is_none());
        assert_eq!(f.format, Format::Json);
    }

    #[test]
    fn rejects_bad_arguments_with_usage_error() {
        for args in [
            &["flatten", "a"][..],
            &["flatten", "a", "b", "c"],
            &["flatten", "a", "Bad"],
            &["flatten", "--dry-run", "a", "Bad"],
            &["flatten", "a", "b", "--format", "yaml"],
            &[],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
