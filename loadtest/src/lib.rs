//! `exposure-loadtest`: drives a real exposure server the way a province does and reports what it
//! holds (DESIGN.md section 9, issue 4).
//!
//! Data flows one way: [`cli`] parses flags into [`RunOptions`]; [`runner::run_scenario`] opens
//! [`client::Connections`] to the target, lets workers take [`schedule::Ticket`]s and perform the
//! [`scenario`]'s RPCs, and feeds every outcome into a [`recorder::Recorder`]; the recorder turns
//! into a [`report::Report`], which [`summary`] prints like ghz, serialises as JSON, [`plot`] draws
//! and [`slo`] judges. [`runner::run_attack`] runs the legitimate mix alone and beside an attack
//! ([`scenario::attack`]), sampling the server with [`server_usage`]. [`demo`] is the guided tour of one case, from upload to confirmed exposure.
//!
//! The binary (`src/main.rs`) only parses arguments and calls [`cli::execute`]; tests call the same
//! functions against a real server.

pub mod cli;
pub mod client;
pub mod code_guessing;
pub mod demo;
mod demo_gaen;
pub mod http;
pub mod plot;
pub mod progress;
pub mod proxy_header;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod schedule;
pub mod server_usage;
pub mod slo;
pub mod summary;
pub mod target;

pub use cli::{Cli, ExitStatus, execute};
pub use report::Report;
pub use runner::{AttackOptions, RunOptions, run_attack, run_scenario};
pub use scenario::{RpcKind, Scenario};
pub use slo::{Slo, Verdict};
pub use target::Target;
