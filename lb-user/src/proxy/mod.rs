//! The L7 proxy (HAProxy-style frontends, ACLs, backends). Pure parts: request matching
//! (`acl`), server selection (`balance`), persistence (`cookie`), header rules (`rewrite`), counters and the access log line (`counters`, `log`);
//! I/O parts: connections to servers (`upstream`), tunnels after an upgrade (`tunnel`), and
//! the HTTP/1.1 proxy that ties them together (`server`), TCP mode (`tcp`) and TLS termination (`tls`).

pub mod acl;
pub mod balance;
pub mod cookie;
pub mod counters;
pub mod listeners;
pub mod log;
pub mod rewrite;
pub mod server;
pub mod snapshot;
pub mod tcp;
pub mod tls;
pub mod tunnel;
pub mod upstream;
