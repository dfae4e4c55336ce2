//! The flow hash, shared by the XDP program and the agent (`lb simulate` and the tests use the
//! same function the kernel does, so they agree on which real a flow goes to).
//!
//! MurmurHash3's 32-bit block mixing and finaliser over the key's words: cheap in BPF (no
//! loops beyond a fixed ten words, no tables) and well spread for Maglev's modulo.

use crate::maps::{FlowKey, ServiceKey};

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn mix(h: u32, word: u32) -> u32 {
    let k = word.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finish(mut h: u32, len: u32) -> u32 {
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of a flow for Maglev selection. With `source_only`, only the source address counts
/// (every connection of a client goes to the same real, like LVS `sh`).
#[inline(always)]
pub fn flow_hash(key: &FlowKey, seed: u32, source_only: bool) -> u32 {
    let mut h = seed;
    h = mix(h, key.src[0]);
    h = mix(h, key.src[1]);
    h = mix(h, key.src[2]);
    h = mix(h, key.src[3]);
    if source_only {
        return finish(h, 16);
    }
    h = mix(h, key.dst[0]);
    h = mix(h, key.dst[1]);
    h = mix(h, key.dst[2]);
    h = mix(h, key.dst[3]);
    h = mix(h, (u32::from(key.src_port) << 16) | u32::from(key.dst_port));
    h = mix(h, u32::from(key.protocol));
    finish(h, 40)
}

/// Hash of a real's address and port under `seed` (Maglev derives a real's permutation of
/// the table from two of these).
#[inline(always)]
pub fn real_hash(addr: &[u32; 4], port: u16, seed: u32) -> u32 {
    let mut h = seed;
    h = mix(h, addr[0]);
    h = mix(h, addr[1]);
    h = mix(h, addr[2]);
    h = mix(h, addr[3]);
    h = mix(h, u32::from(port));
    finish(h, 20)
}

/// Identity of a real (address and port), stored in its map slot and in connection-table
/// entries so an entry never follows a slot that was given to another real.
#[inline(always)]
pub fn real_key(addr: &[u32; 4], port: u16) -> u32 {
    // 0 is kept for "no key" so an all-zero slot never matches.
    real_hash(addr, port, 0x5eed_1b00) | 1
}

/// Bit of the service filter (`0..64 * SERVICE_FILTER_WORDS`) for `key`: a few instructions
/// of mixing, so the XDP program can pass most packets for no service after one array read
/// instead of a hash-table lookup. Collisions only cost that lookup.
#[inline(always)]
pub fn service_filter_bit(key: &ServiceKey) -> u32 {
    let words = key.addr[0]
        ^ key.addr[1].rotate_left(7)
        ^ key.addr[2].rotate_left(14)
        ^ key.addr[3].rotate_left(21);
    let x =
        words ^ (u32::from(key.port) << 16 | u32::from(key.protocol) << 8 | u32::from(key.family));
    // The high half of a multiplication by an odd constant mixes every input bit into it.
    x.wrapping_mul(0x9e37_79b1) >> 16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], port: u16) -> ServiceKey {
        ServiceKey {
            addr: [u32::from_ne_bytes(a), 0, 0, 0],
            port,
            protocol: 6,
            family: crate::maps::FAMILY_V4,
        }
    }

    /// Neighbouring VIPs and ports, the usual shape of a configuration, land on distinct
    /// filter bits (a shared bit would only cost a lookup, but should be rare).
    #[test]
    fn neighbouring_services_get_distinct_filter_bits() {
        let mut bits = std::collections::BTreeSet::new();
        let mut keys = 0;
        for host in 1..=250u8 {
            for port in [53, 80, 443, 8080] {
                bits.insert(service_filter_bit(&v4([10, 0, 0, host], port)));
                keys += 1;
            }
        }
        assert!(
            bits.iter()
                .all(|b| *b < 64 * crate::maps::SERVICE_FILTER_WORDS)
        );
        // 1000 keys in 65,536 bits: a random spread shares about 8.
        assert!(keys - bits.len() <= 20, "{} shared bits", keys - bits.len());
    }
}
