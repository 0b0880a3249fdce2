//! Ingest: the authenticated `KeyUpload` service, its validation rules, and the group-commit
//! writer that makes each upload durable before it is acknowledged.

pub mod authority_limits;
pub mod code;
pub mod code_limits;
pub mod decoy;
pub mod issue;
pub mod revoke;
pub mod service;
pub mod validate;
pub mod writer;
