//! Internet checksum updates (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')) and the IPv4 header
//! checksum, on 16-bit big-endian words.

/// Folds a 32-bit one's-complement sum into 16 bits.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Adds the two big-endian 16-bit words of 4 network-order bytes.
#[inline(always)]
fn add4(sum: u32, bytes: [u8; 4]) -> u32 {
    sum + u32::from(u16::from_be_bytes([bytes[0], bytes[1]]))
        + u32::from(u16::from_be_bytes([bytes[2], bytes[3]]))
}

/// Adds the one's complement of the two words of 4 network-order bytes.
#[inline(always)]
fn sub4(sum: u32, bytes: [u8; 4]) -> u32 {
    sum + u32::from(!u16::from_be_bytes([bytes[0], bytes[1]]))
        + u32::from(!u16::from_be_bytes([bytes[2], bytes[3]]))
}

/// The checksum `check` after one address word (4 bytes, as read from the packet with
/// `from_ne_bytes`) changed from `old` to `new`.
#[inline(always)]
pub fn replace_word(check: u16, old: u32, new: u32) -> u16 {
    let sum = u32::from(!check);
    !fold(add4(sub4(sum, old.to_ne_bytes()), new.to_ne_bytes()))
}

/// The checksum `check` after an IPv6 address (four words) changed from `old` to `new`.
#[inline(always)]
pub fn replace_addr6(check: u16, old: &[u32; 4], new: &[u32; 4]) -> u16 {
    let mut sum = u32::from(!check);
    sum = sub4(sum, old[0].to_ne_bytes());
    sum = sub4(sum, old[1].to_ne_bytes());
    sum = sub4(sum, old[2].to_ne_bytes());
    sum = sub4(sum, old[3].to_ne_bytes());
    sum = add4(sum, new[0].to_ne_bytes());
    sum = add4(sum, new[1].to_ne_bytes());
    sum = add4(sum, new[2].to_ne_bytes());
    sum = add4(sum, new[3].to_ne_bytes());
    !fold(sum)
}

/// The checksum `check` after a 16-bit field changed from `old` to `new` (host order values).
#[inline(always)]
pub fn replace_u16(check: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

/// The checksum of a 20-byte IPv4 header given as ten big-endian words, its checksum word
/// taken as zero.
#[inline(always)]
pub fn ipv4_header(words: &[u16; 10]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < 10 {
        if i != 5 {
            sum += u32::from(words[i]);
        }
        i += 1;
    }
    !fold(sum)
}
