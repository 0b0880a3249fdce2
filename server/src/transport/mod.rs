//! What sits between a listening socket and the services: the accounting and deadlines of
//! every accepted connection ([`connections`], [`connection`]) and the deadline of long-lived
//! gRPC streams that are not phone downloads ([`stream_deadline`]).

pub mod connection;
pub mod connections;
pub mod stream_deadline;
