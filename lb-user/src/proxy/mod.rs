//! The L7 proxy (HAProxy-style frontends, ACLs, backends). Built up issue by issue; so far
//! the request-matching engine (`acl`) and server selection (`balance`), both pure, and the
//! HTTP/1.1 proxy that uses them (`server`).

pub mod acl;
pub mod balance;
pub mod server;
