//! The exposure-notification key server as a library: `main.rs` parses the configuration and
//! calls [`run`]; the end-to-end tests call it too, on a listener bound to port 0.
//!
//! Data flows one way: [`ingest`] validates uploads and makes them durable in [`storage`];
//! the [`publisher`] expands released keys into signed filter batches and records them in the
//! [`catalog`]; [`distribution`] serves the batches and confirm buckets to phones over gRPC,
//! and [`http_mirror`] serves the same as the static [`layout`] of DESIGN.md section 10. The
//! [`console`] is the health authorities' staff web page, where codes are issued.

pub mod admin;
pub mod admission;
pub mod app;
pub mod backup;
pub mod batch_cache;
pub mod bucket;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod console;
pub mod datadir;
pub mod distribution;
pub mod error;
pub mod files;
pub mod health;
pub mod http_mirror;
pub mod inbox;
pub mod ingest;
pub mod launch;
pub mod layout;
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
pub mod transport;

pub use app::{Listeners, ServerError, run, run_listeners, run_with_clock, run_with_tls};
pub use clock::Clock;
pub use config::ServerConfig;
