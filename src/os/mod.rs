//! What differs between Linux, macOS and Windows, one file per concern,
//! each behind `cfg` here and nowhere else: the rest of the program calls
//! these and reads the same on every system. Every file has unit tests of
//! what can be tested on the system that runs them.
//!
//! - [`local`]: the engine's local endpoint and the bridge's (a unix socket;
//!   a named pipe on Windows), and what the user is told about them.
//! - [`signals`]: what stops a run (SIGINT and SIGTERM; Ctrl-C, Ctrl-Break
//!   and the console closing on Windows).
//! - [`plugin_socket`]: the docker CLI's plugin socket, whose closing means
//!   the CLI went away.
//! - [`files`]: the mode of the `-o` archive, positional reads of spooled
//!   layers, the error for an output that is a directory.
//! - [`env`]: the variables that name the home and temporary directories.
//! - [`process`]: who owns a run's temporary objects (host, process ID and
//!   start), and whether that owner is gone.
//! - [`allocator`]: glibc's mmap threshold (glibc only).

pub mod allocator;
pub mod env;
pub mod files;
pub mod local;
pub mod plugin_socket;
pub mod process;
pub mod signals;
