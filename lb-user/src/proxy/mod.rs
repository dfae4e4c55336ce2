//! The L7 proxy (HAProxy-style frontends, ACLs, backends). Built up issue by issue; so far
//! the request-matching engine (`acl`) and server selection (`balance`), both pure.

pub mod acl;
pub mod balance;
