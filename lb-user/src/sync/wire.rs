//! The sync message: a header, up to [`MAX_ENTRIES`] flow entries, and an HMAC-SHA256 of both
//! under the nodes' shared key. Every field has a fixed place and byte order, so nodes of any
//! architecture agree.
//!
//! ```text
//! header (32 bytes): "LBSY" | version u8 | kind u8 | 2 zero bytes | hash seed u32 | sender u64 |
//!                    sequence u64 | entries u16 | 2 zero bytes
//! entry (112 bytes): kind u8 | family u8 | protocol u8 | 0 | flow src [16] | flow dst [16] |
//!                    src port u16 | dst port u16 | real key u32 | service addr [16] |
//!                    service port u16 | service protocol u8 | service family u8 |
//!                    NAT VIP [16] | NAT VIP port u16 | client MAC [6] | interface name [16] |
//!                    seen u64 (when the sender read the flow, µs since the Unix epoch)
//! mac (32 bytes):    HMAC-SHA256(key, header | entries)
//! ```
//!
//! An entry's kind is `lb_common::maps::EVENT_*`: a new flow (CONN), a NAT reverse entry
//! (NAT), or a flow the client closed with a FIN or a RST (laid out as CONN).
//!
//! Kind 0 carries flows; kind 1 (no entries) asks the receiver for a copy of its whole tables,
//! which a node sends when it starts, so a node that joins knows the flows already running;
//! kind 2 (no entries) ends such a copy.
//!
//! Addresses are the maps' network-order words, sent byte for byte; ports and keys big-endian.
//! The receiver refuses a message whose MAC, version, hash seed or sequence (each sender's
//! must grow: a replayed message is refused) is wrong, and says why.

use hmac::{Hmac, Mac as _};
use lb_common::maps::{EVENT_CONN, EVENT_FIN, EVENT_NAT, EVENT_RST, FlowKey, ServiceKey};
use sha2::Sha256;

/// Wire format version.
pub const VERSION: u8 = 1;
const MAGIC: &[u8; 4] = b"LBSY";
const HEADER: usize = 32;
const ENTRY: usize = 112;
const MAC: usize = 32;
/// Entries per message: a message stays within a 1500-byte MTU.
pub const MAX_ENTRIES: usize = 12;

/// One flow, named so a peer with the same configuration can place it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A connection-table entry: the client's side of a flow goes to the real with `real_key`
    /// of `service`.
    Conn {
        flow: FlowKey,
        service: ServiceKey,
        real_key: u32,
    },
    /// The client closed the flow (a FIN, or a RST when `reset`): the receiver lets its entry
    /// go after its closing timeout.
    Closed {
        flow: FlowKey,
        service: ServiceKey,
        real_key: u32,
        reset: bool,
    },
    /// A NAT reverse entry: the real's side of a flow turns back into `vip:vip_port`, sent to
    /// `client_mac` out of the interface called `interface` (the receiver's own index and MAC
    /// of that name are used).
    Nat {
        back: FlowKey,
        vip: [u32; 4],
        vip_port: u16,
        client_mac: [u8; 6],
        interface: String,
    },
}

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// Flows (new ones, or part of a copy).
    #[default]
    Flows,
    /// A request for a copy of the receiver's tables.
    CopyRequest,
    /// The end of a copy.
    CopyDone,
}

/// An entry with when its sender saw the flow (µs since the Unix epoch, the sender's clock),
/// for the sync lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    /// The flow.
    pub entry: Entry,
    /// When the sender read it from its ring.
    pub seen_us: u64,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// What it is for.
    pub kind: Kind,
    /// The sending node's hash seed (must equal the receiver's).
    pub hash_seed: u32,
    /// The sender's id, random per start.
    pub sender: u64,
    /// The sender's message number, growing.
    pub sequence: u64,
    /// The flows.
    pub entries: Vec<Stamped>,
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a sync message, or cut short.
    #[error("malformed message")]
    Malformed,
    /// Another wire version.
    #[error("wire version {0}, this node speaks {VERSION}")]
    Version(u8),
    /// The MAC does not match: another key, or a forged or damaged message.
    #[error("bad MAC (another key, or a forged message)")]
    BadMac,
    /// The sender's hash seed differs: its flows would not map to the same reals here.
    #[error("hash seed {0:#x} differs from this node's")]
    HashSeed(u32),
    /// A sequence number seen already from that sender (a replay).
    #[error("sequence {0} already seen from this sender (replay)")]
    Replay(u64),
}

fn words(out: &mut Vec<u8>, words: &[u32; 4]) {
    for word in words {
        out.extend_from_slice(&word.to_ne_bytes());
    }
}

fn read_words(bytes: &[u8]) -> [u32; 4] {
    let mut out = [0u32; 4];
    for (i, word) in out.iter_mut().enumerate() {
        *word = u32::from_ne_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ]);
    }
    out
}

fn mac(key: &[u8], bytes: &[u8]) -> [u8; MAC] {
    let mut mac =
        <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

/// Encodes `message` under `key`.
pub fn encode(message: &Message, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + ENTRY * message.entries.len() + MAC);
    out.extend_from_slice(MAGIC);
    let kind = match message.kind {
        Kind::Flows => 0,
        Kind::CopyRequest => 1,
        Kind::CopyDone => 2,
    };
    out.extend_from_slice(&[VERSION, kind, 0, 0]);
    out.extend_from_slice(&message.hash_seed.to_be_bytes());
    out.extend_from_slice(&message.sender.to_be_bytes());
    out.extend_from_slice(&message.sequence.to_be_bytes());
    out.extend_from_slice(&(message.entries.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    for stamped in &message.entries {
        let entry = &stamped.entry;
        let start = out.len();
        let (kind, flow) = match entry {
            Entry::Conn { flow, .. } => (EVENT_CONN as u8, flow),
            Entry::Closed { flow, reset, .. } => {
                (if *reset { EVENT_RST } else { EVENT_FIN } as u8, flow)
            }
            Entry::Nat { back, .. } => (EVENT_NAT as u8, back),
        };
        out.extend_from_slice(&[kind, flow.family, flow.protocol, 0]);
        words(&mut out, &flow.src);
        words(&mut out, &flow.dst);
        out.extend_from_slice(&flow.src_port.to_be_bytes());
        out.extend_from_slice(&flow.dst_port.to_be_bytes());
        match entry {
            Entry::Conn {
                service, real_key, ..
            }
            | Entry::Closed {
                service, real_key, ..
            } => {
                out.extend_from_slice(&real_key.to_be_bytes());
                words(&mut out, &service.addr);
                out.extend_from_slice(&service.port.to_be_bytes());
                out.extend_from_slice(&[service.protocol, service.family]);
            }
            Entry::Nat {
                vip,
                vip_port,
                client_mac,
                interface,
                ..
            } => {
                out.extend_from_slice(&[0; 4 + 16 + 4]);
                words(&mut out, vip);
                out.extend_from_slice(&vip_port.to_be_bytes());
                out.extend_from_slice(client_mac);
                let mut name = [0u8; 16];
                let bytes = interface.as_bytes();
                let n = bytes.len().min(15);
                name[..n].copy_from_slice(&bytes[..n]);
                out.extend_from_slice(&name);
            }
        }
        out.resize(start + ENTRY - 8, 0);
        out.extend_from_slice(&stamped.seen_us.to_be_bytes());
    }
    let tag = mac(key, &out);
    out.extend_from_slice(&tag);
    out
}

/// Decodes `bytes` under `key`, checking the MAC, the version and the hash seed (the caller
/// checks the sequence, which needs its memory of senders).
pub fn decode(bytes: &[u8], key: &[u8], hash_seed: u32) -> Result<Message, Refused> {
    if bytes.len() < HEADER + MAC || &bytes[..4] != MAGIC {
        return Err(Refused::Malformed);
    }
    let (body, tag) = bytes.split_at(bytes.len() - MAC);
    // Constant-time comparison: the MAC is checked before anything else is believed.
    let mut check =
        <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    check.update(body);
    check.verify_slice(tag).map_err(|_| Refused::BadMac)?;
    if body[4] != VERSION {
        return Err(Refused::Version(body[4]));
    }
    let kind = match body[5] {
        0 => Kind::Flows,
        1 => Kind::CopyRequest,
        2 => Kind::CopyDone,
        _ => return Err(Refused::Malformed),
    };
    let be32 = |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    let be64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let seed = be32(8);
    if seed != hash_seed {
        return Err(Refused::HashSeed(seed));
    }
    let count = usize::from(u16::from_be_bytes([body[28], body[29]]));
    if count > MAX_ENTRIES || body.len() != HEADER + count * ENTRY {
        return Err(Refused::Malformed);
    }
    let mut entries = Vec::with_capacity(count);
    for e in body[HEADER..].chunks_exact(ENTRY) {
        let be16 = |at: usize| u16::from_be_bytes([e[at], e[at + 1]]);
        let flow = FlowKey {
            src: read_words(&e[4..20]),
            dst: read_words(&e[20..36]),
            src_port: be16(36),
            dst_port: be16(38),
            protocol: e[2],
            family: e[1],
            _pad: [0; 2],
        };
        let real_key = u32::from_be_bytes([e[40], e[41], e[42], e[43]]);
        let service = ServiceKey {
            addr: read_words(&e[44..60]),
            port: be16(60),
            protocol: e[62],
            family: e[63],
        };
        let entry = match u32::from(e[0]) {
            EVENT_CONN => Entry::Conn {
                flow,
                real_key,
                service,
            },
            kind @ (EVENT_FIN | EVENT_RST) => Entry::Closed {
                flow,
                real_key,
                service,
                reset: kind == EVENT_RST,
            },
            EVENT_NAT => {
                let mut client_mac = [0u8; 6];
                client_mac.copy_from_slice(&e[82..88]);
                let name = &e[88..104];
                let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
                Entry::Nat {
                    back: flow,
                    vip: read_words(&e[64..80]),
                    vip_port: be16(80),
                    client_mac,
                    interface: String::from_utf8_lossy(&name[..end]).into_owned(),
                }
            }
            _ => return Err(Refused::Malformed),
        };
        let mut seen = [0u8; 8];
        seen.copy_from_slice(&e[104..112]);
        entries.push(Stamped {
            entry,
            seen_us: u64::from_be_bytes(seen),
        });
    }
    Ok(Message {
        kind,
        hash_seed: seed,
        sender: be64(12),
        sequence: be64(20),
        entries,
    })
}

/// The highest sequence seen from each sender: a message must come after it.
#[derive(Debug, Default)]
pub struct Senders(std::collections::HashMap<u64, u64>);

impl Senders {
    /// Accepts `message`'s sequence (remembering it) or refuses it as a replay.
    pub fn admit(&mut self, message: &Message) -> Result<(), Refused> {
        let last = self.0.entry(message.sender).or_insert(0);
        if message.sequence <= *last {
            return Err(Refused::Replay(message.sequence));
        }
        *last = message.sequence;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a shared sync key!";

    fn sample() -> Message {
        let flow = FlowKey {
            src: [u32::from_ne_bytes([10, 0, 5, 2]), 0, 0, 0],
            dst: [u32::from_ne_bytes([10, 0, 5, 100]), 0, 0, 0],
            src_port: 40000,
            dst_port: 80,
            protocol: 6,
            family: 4,
            _pad: [0; 2],
        };
        let service = ServiceKey {
            addr: flow.dst,
            port: 80,
            protocol: 6,
            family: 4,
        };
        Message {
            kind: Kind::Flows,
            hash_seed: 0x5eed,
            sender: 7,
            sequence: 1,
            entries: vec![
                Stamped {
                    seen_us: 1_700_000_000_123,
                    entry: Entry::Conn {
                        flow,
                        service,
                        real_key: 0xdead_beef,
                    },
                },
                Stamped {
                    seen_us: 1_700_000_000_125,
                    entry: Entry::Closed {
                        flow,
                        service,
                        real_key: 0xdead_beef,
                        reset: true,
                    },
                },
                Stamped {
                    seen_us: 1_700_000_000_124,
                    entry: Entry::Nat {
                        back: flow,
                        vip: flow.dst,
                        vip_port: 80,
                        client_mac: [2, 0, 0, 0, 0, 9],
                        interface: "eth0".into(),
                    },
                },
            ],
        }
    }

    #[test]
    fn a_message_round_trips_with_fixed_places() {
        let bytes = encode(&sample(), KEY);
        assert_eq!(bytes.len(), HEADER + 3 * ENTRY + MAC);
        // The second entry is a reset flow.
        assert_eq!(bytes[HEADER + ENTRY], EVENT_RST as u8);
        assert_eq!(&bytes[..5], b"LBSY\x01");
        // The client address sits at bytes 4..8 of the first entry, in network order.
        assert_eq!(&bytes[HEADER + 4..HEADER + 8], &[10, 0, 5, 2]);
        assert_eq!(decode(&bytes, KEY, 0x5eed), Ok(sample()));
    }

    #[test]
    fn forged_damaged_foreign_and_replayed_messages_are_refused() {
        let bytes = encode(&sample(), KEY);
        assert_eq!(
            decode(&bytes, b"another key, not ours", 0x5eed),
            Err(Refused::BadMac)
        );
        let mut damaged = bytes.clone();
        damaged[HEADER + 10] ^= 1;
        assert_eq!(decode(&damaged, KEY, 0x5eed), Err(Refused::BadMac));
        assert_eq!(decode(&bytes, KEY, 0x1234), Err(Refused::HashSeed(0x5eed)));
        assert_eq!(decode(&bytes[..20], KEY, 0x5eed), Err(Refused::Malformed));
        // Another version, correctly signed, is refused by its number.
        let mut future = bytes[..bytes.len() - MAC].to_vec();
        future[4] = 2;
        let tag = mac(KEY, &future);
        future.extend_from_slice(&tag);
        assert_eq!(decode(&future, KEY, 0x5eed), Err(Refused::Version(2)));
        let mut senders = Senders::default();
        let message = decode(&bytes, KEY, 0x5eed).expect("valid");
        assert_eq!(senders.admit(&message), Ok(()));
        assert_eq!(senders.admit(&message), Err(Refused::Replay(1)));
        let next = Message {
            sequence: 2,
            ..message
        };
        assert_eq!(senders.admit(&next), Ok(()));
    }
}
