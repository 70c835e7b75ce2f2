//! Shell completion through the docker CLI. On `docker flatten …<TAB>` the
//! CLI runs `docker-flatten __complete flatten ARGS… WORD` (cobra's protocol:
//! ARGS are the words already typed, WORD the one being completed, maybe
//! empty) and hands our stdout to the shell: one candidate per line
//! (`value<TAB>description`), then `:DIRECTIVE`, a bit set telling the shell
//! what to do with them.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::output::text::short_id;

/// What the docker CLI runs the plugin with to ask for completions.
pub const REQUEST: &str = "__complete";
/// The same, for shells that show no descriptions.
pub const REQUEST_NO_DESC: &str = "__completeNoDesc";

/// No directive bit: the shell completes file names.
const DEFAULT: u32 = 0;

/// Cobra's directive bits.
pub mod directive {
    pub const ERROR: u32 = 1;
    pub const NO_SPACE: u32 = 2;
    pub const NO_FILE_COMP: u32 = 4;
}

/// The answer for the shell.
#[derive(Debug, PartialEq, Eq)]
pub struct Completion {
    pub candidates: Vec<(String, String)>,
    pub directive: u32,
}

/// What to complete, once the words have been read.
#[derive(Debug, PartialEq, Eq)]
pub enum Want {
    /// Local images whose `repo:tag` starts with the prefix.
    Images {
        prefix: String,
    },
    Done(Completion),
}

/// Works out what the word being completed can be. `words` are what
/// follows `__complete`: the subcommand, the typed words, the current word.
pub fn want(words: &[String]) -> Want {
    let Some((current, typed)) = words.split_last() else {
        return Want::Done(subcommand(""));
    };
    let Some((command, typed)) = typed.split_first() else {
        return Want::Done(subcommand(current));
    };
    if command != "flatten" {
        return Want::Done(none(directive::NO_FILE_COMP));
    }
    let cli = Cli::command();
    let flatten = cli.find_subcommand("flatten").expect("flatten is defined");
    let flags: Vec<&clap::Arg> = flatten
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set())
        .collect();
    let takes_value = |a: &clap::Arg| a.get_action().takes_values();
    let long = |name: &str| flags.iter().copied().find(|a| a.get_long() == Some(name));
    let short = |c: char| flags.iter().copied().find(|a| a.get_short() == Some(c));

    let mut positionals = 0;
    let mut pending: Option<&clap::Arg> = None;
    let mut given: Vec<&str> = Vec::new();
    let mut only_positionals = false;
    for word in typed {
        if pending.take().is_some() {
            continue; // the value of the flag before
        }
        if only_positionals || word == "-" || !word.starts_with('-') {
            positionals += 1;
        } else if word == "--" {
            only_positionals = true;
        } else if let Some(name) = word.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((n, _)) => (n, true),
                None => (name, false),
            };
            if let Some(arg) = long(name) {
                given.push(arg.get_id().as_str());
                if takes_value(arg) && !value {
                    pending = Some(arg);
                }
            }
        } else {
            // A cluster of short flags; a value-taking one takes the rest.
            for (i, c) in word.char_indices().skip(1) {
                let Some(arg) = short(c) else { break };
                given.push(arg.get_id().as_str());
                if takes_value(arg) {
                    if i + c.len_utf8() == word.len() {
                        pending = Some(arg);
                    }
                    break;
                }
            }
        }
    }

    if let Some(arg) = pending {
        return match arg.get_id().as_str() {
            // BASE names a local image, as IMAGE does.
            "keep_base" => Want::Images {
                prefix: current.clone(),
            },
            _ => Want::Done(values(arg, "", current)),
        };
    }
    if !only_positionals {
        if let Some((name, value)) = current.strip_prefix("--").and_then(|f| f.split_once('=')) {
            return Want::Done(match long(name) {
                Some(arg) => values(arg, &format!("--{name}="), value),
                None => none(directive::NO_FILE_COMP),
            });
        }
        if current.starts_with('-') {
            let candidates = flags
                .iter()
                .filter(|a| !given.contains(&a.get_id().as_str()))
                .filter_map(|a| Some((format!("--{}", a.get_long()?), help(a))))
                .filter(|(name, _)| name.starts_with(current))
                .collect();
            return Want::Done(Completion {
                candidates,
                directive: directive::NO_FILE_COMP,
            });
        }
    }
    // IMAGE, then TAG: both name local images (TAG may equal IMAGE).
    if positionals < 2 {
        Want::Images {
            prefix: current.clone(),
        }
    } else {
        Want::Done(none(directive::NO_FILE_COMP))
    }
}

/// Completes local images from their `repo:tag` names and short IDs.
pub fn images(prefix: &str, images: &[(Vec<String>, String)]) -> Completion {
    let mut candidates: Vec<(String, String)> = images
        .iter()
        .flat_map(|(tags, id)| {
            let short = short_id(id).to_owned();
            tags.iter()
                .filter(|t| !t.contains("<none>"))
                .map(move |t| (t.clone(), format!("image {short}")))
        })
        .filter(|(name, _)| name.starts_with(prefix))
        .collect();
    candidates.sort();
    candidates.dedup();
    Completion {
        candidates,
        directive: directive::NO_FILE_COMP,
    }
}

/// The completion when the engine cannot be asked.
pub fn failed() -> Completion {
    none(directive::ERROR)
}

impl Completion {
    /// The text for the shell: candidates, then the directive line.
    pub fn render(&self, descriptions: bool) -> String {
        let mut out = String::new();
        for (value, description) in &self.candidates {
            out.push_str(value);
            if descriptions && !description.is_empty() {
                out.push('\t');
                out.push_str(description);
            }
            out.push('\n');
        }
        out.push_str(&format!(":{}\n", self.directive));
        out
    }

    /// The line cobra writes to stderr, which shells discard; handy when
    /// debugging completion by hand.
    pub fn note(&self) -> String {
        let names = [
            (directive::ERROR, "ShellCompDirectiveError"),
            (directive::NO_SPACE, "ShellCompDirectiveNoSpace"),
            (directive::NO_FILE_COMP, "ShellCompDirectiveNoFileComp"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(bit, _)| self.directive & bit != 0)
            .map(|(_, name)| *name)
            .collect();
        let set = if set.is_empty() {
            "ShellCompDirectiveDefault".to_owned()
        } else {
            set.join(", ")
        };
        format!("Completion ended with directive: {set}")
    }
}

fn values(arg: &clap::Arg, prefix: &str, current: &str) -> Completion {
    // FILE: the shell's own file completion.
    if arg.get_id() == "output" {
        return none(DEFAULT);
    }
    let candidates = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| {
            let help = v.get_help().map(ToString::to_string).unwrap_or_default();
            (format!("{prefix}{}", v.get_name()), help)
        })
        .filter(|(name, _)| name.starts_with(&format!("{prefix}{current}")))
        .collect();
    Completion {
        candidates,
        directive: directive::NO_FILE_COMP,
    }
}

fn subcommand(current: &str) -> Completion {
    let candidates = Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name().starts_with(current))
        .map(|c| (c.get_name().to_owned(), about(c)))
        .collect();
    Completion {
        candidates,
        directive: directive::NO_FILE_COMP,
    }
}

fn none(directive: u32) -> Completion {
    Completion {
        candidates: Vec::new(),
        directive,
    }
}

fn help(arg: &clap::Arg) -> String {
    arg.get_help().map(ToString::to_string).unwrap_or_default()
}

fn about(command: &clap::Command) -> String {
    command
        .get_about()
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want_of(words: &[&str]) -> Want {
        want(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    fn done(words: &[&str]) -> Completion {
        match want_of(words) {
            Want::Done(c) => c,
            other => panic!("{words:?}: expected a finished completion, got {other:?}"),
        }
    }

    fn names(c: &Completion) -> Vec<&str> {
        c.candidates.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn positionals_complete_images_then_nothing() {
        let images = |prefix: &str| Want::Images {
            prefix: prefix.into(),
        };
        assert_eq!(want_of(&["flatten", ""]), images(""));
        assert_eq!(want_of(&["flatten", "app:1", "ap"]), images("ap"));
        assert_eq!(
            want_of(&["flatten", "--format", "json", "a", ""]),
            images("")
        );
        assert_eq!(
            want_of(&["flatten", "-q", "--", "-weird"]),
            images("-weird")
        );
        let c = done(&["flatten", "a", "b", ""]);
        assert_eq!(
            (c.candidates.len(), c.directive),
            (0, directive::NO_FILE_COMP)
        );
    }

    #[test]
    fn flags_complete_by_name_without_those_given() {
        let c = done(&["flatten", "--"]);
        let n = names(&c);
        assert!(n.contains(&"--dry-run") && n.contains(&"--format") && n.contains(&"--quiet"));
        assert!(c
            .candidates
            .iter()
            .any(|(n, d)| n == "--dry-run" && !d.is_empty()));
        let c = done(&["flatten", "-q", "--dry-run", "--"]);
        assert!(!names(&c).contains(&"--quiet") && !names(&c).contains(&"--dry-run"));
        assert_eq!(names(&done(&["flatten", "--dr"])), ["--dry-run"]);
    }

    #[test]
    fn flag_values_complete_in_both_spellings() {
        assert_eq!(names(&done(&["flatten", "--format", ""])), ["text", "json"]);
        assert_eq!(names(&done(&["flatten", "--format", "j"])), ["json"]);
        assert_eq!(names(&done(&["flatten", "--format=t"])), ["--format=text"]);
    }

    #[test]
    fn the_subcommand_itself_completes() {
        assert_eq!(names(&done(&["fl"])), ["flatten"]);
        assert_eq!(done(&["other", ""]).candidates.len(), 0);
    }

    #[test]
    fn images_list_names_not_untagged_ones() {
        let list = vec![
            (
                vec!["b:1".to_owned(), "a:2".to_owned()],
                "sha256:0123456789abcdef".to_owned(),
            ),
            (vec!["<none>:<none>".to_owned()], "sha256:ff".to_owned()),
        ];
        let c = images("", &list);
        assert_eq!(names(&c), ["a:2", "b:1"]);
        assert_eq!(c.candidates[0].1, "image 0123456789ab");
        assert_eq!(names(&images("b", &list)), ["b:1"]);
        assert_eq!(
            c.render(true),
            "a:2\timage 0123456789ab\nb:1\timage 0123456789ab\n:4\n"
        );
        assert_eq!(c.render(false), "a:2\nb:1\n:4\n");
        assert_eq!(failed().render(true), ":1\n");
        assert_eq!(
            c.note(),
            "Completion ended with directive: ShellCompDirectiveNoFileComp"
        );
    }
}
