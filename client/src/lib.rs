//! `exposure-client`: the staff tool of a health authority (DESIGN.md sections 7 and 12). It
//! issues one-time upload codes, uploads a case's keys from a JSON keys file (with the
//! authority's token, or with a code as the patient's phone does), and lists, downloads and
//! verifies published batches.
//!
//! Data flows one way: [`cli`] parses flags; [`commands::execute`] reads the credential
//! ([`credential`]) and the keys file ([`keys_file`]), makes the RPCs of [`calls`] against the
//! [`target`], and prints results, or the server's reasons ([`refusal`]). The binary
//! (`src/main.rs`) only parses arguments and calls [`commands::execute`].
//!
//! [`target`] and [`credential`] are shared with `exposure-loadtest`, which reaches servers and
//! authenticates the same way.

pub mod calls;
pub mod cli;
pub mod commands;
pub mod credential;
pub mod keys_file;
pub mod refusal;
pub mod target;

pub use cli::Cli;
pub use commands::{ExitStatus, execute};
