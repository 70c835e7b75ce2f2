//! The environment variables that name directories, which differ by
//! system: the home directory (the docker config directory's default is
//! `.docker` in it) as Go's `os.UserHomeDir` reads it, which the docker
//! CLI uses, and the temporary directory as `std::env::temp_dir` reads it.

use std::path::PathBuf;

/// The variable naming the home directory.
#[cfg(unix)]
pub const HOME: &str = "HOME";
#[cfg(windows)]
pub const HOME: &str = "USERPROFILE";

/// The variable to set for another temporary directory (Windows reads
/// `TMP`, then `TEMP`).
#[cfg(unix)]
pub const TEMP_DIR: &str = "TMPDIR";
#[cfg(windows)]
pub const TEMP_DIR: &str = "TMP";

/// The home directory, as the docker CLI finds it.
pub fn home() -> Option<PathBuf> {
    std::env::var_os(HOME).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_are_the_systems_own() {
        #[cfg(unix)]
        assert_eq!((HOME, TEMP_DIR), ("HOME", "TMPDIR"));
        #[cfg(windows)]
        assert_eq!((HOME, TEMP_DIR), ("USERPROFILE", "TMP"));
        assert_eq!(home(), std::env::var_os(HOME).map(PathBuf::from));
    }
}
