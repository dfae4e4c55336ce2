//! VRRP (RFC 5798 v3, RFC 3768 v2), interoperable with keepalived.
//!
//! Layout: `packet` encodes and decodes advertisements; `fsm` is the protocol state machine as
//! a pure function. The runtime that sends and receives them, moves addresses and announces
//! them comes next (see the VRRP issue's notes).

pub mod fsm;
pub mod packet;
