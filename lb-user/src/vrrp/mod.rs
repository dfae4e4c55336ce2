//! VRRP (RFC 5798 v3, RFC 3768 v2), interoperable with keepalived.
//!
//! Layout: `packet` encodes and decodes advertisements; `fsm` is the protocol state machine as
//! a pure function; `net` is the raw socket, `addr` the interface's addresses over netlink,
//! `garp` gratuitous ARP; `track` watches interfaces, scripts and service health;
//! `instance` runs one instance and publishes which instances are
//! master (the [`instance::Ownership`] snapshot the data plane reads).

pub mod addr;
pub mod fsm;
pub mod garp;
pub mod instance;
pub mod net;
pub mod packet;
pub mod track;
