//! The L7 proxy (HAProxy-style frontends, ACLs, backends). Pure parts: request matching
//! (`acl`), server selection (`balance`), persistence (`cookie`), header rules (`rewrite`),
//! counters and the access log line (`counters`, `log`). I/O parts: the configuration
//! snapshot with its run-time state (`snapshot`), listening sockets and reload
//! (`listeners`), HTTP/1 request framing, the one judge of where client messages end
//! (`framing`), the guard that applies it and the client timeouts to client bytes (`head_guard`), connections to servers
//! (`upstream`), the first phase of each request: refusals and the authority (`screen`), tunnels after an upgrade (`tunnel`), the HTTP proxy that ties them together
//! (`server`), TCP mode (`tcp`, with zero-copy tunnels: `splice`) and TLS termination (`tls`).

pub mod acl;
pub mod balance;
pub mod cookie;
pub mod counters;
pub mod framing;
pub mod head_guard;
pub mod listeners;
pub mod log;
pub mod rewrite;
pub mod screen;
pub mod server;
pub mod snapshot;
pub mod splice;
pub mod tcp;
pub mod tls;
pub mod tunnel;
pub mod upstream;
