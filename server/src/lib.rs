//! The exposure-notification key server as a library: `main.rs` parses the configuration and
//! calls [`run`]; the end-to-end tests call it too, on a listener bound to port 0.
//!
//! Data flows one way: [`ingest`] validates uploads and makes them durable in [`storage`];
//! the [`publisher`] expands released keys into signed filter batches and records them in the
//! [`catalog`]; [`distribution`] serves the batches and confirm buckets to phones.

pub mod admin;
pub mod app;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod distribution;
pub mod error;
pub mod files;
pub mod inbox;
pub mod ingest;
pub mod launch;
pub mod metrics;
pub mod metrics_http;
pub mod middleware;
pub mod publisher;
pub mod signal;
pub mod signing;
pub mod storage;
pub mod sys;
pub mod telemetry;
pub mod tls;

pub use app::{ServerError, run, run_with_clock, run_with_tls};
pub use clock::Clock;
pub use config::ServerConfig;
