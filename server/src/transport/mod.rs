//! What sits between a listening socket and the services: the accounting and deadlines of
//! every accepted connection ([`connections`], [`connection`]), the PROXY protocol header that
//! trusted proxies send first ([`proxy_protocol`]), the pacing of refusals ([`refusal`]), the
//! serving loop of the HTTP/1.1 listeners ([`http1`]) and the deadline of long-lived gRPC
//! streams that are not phone downloads ([`stream_deadline`]).

pub mod connection;
pub mod connections;
pub mod http1;
pub mod proxy_protocol;
pub mod refusal;
pub mod stream_deadline;
