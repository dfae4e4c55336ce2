//! VRRP advertisements: RFC 5798 (VRRPv3, IPv4 and IPv6) and RFC 3768 (VRRPv2, IPv4, with
//! keepalived's simple password authentication). Encoding and decoding in one place, with a
//! typed error for every way a received packet can be wrong.

use std::net::IpAddr;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The only VRRP packet type: an advertisement.
const TYPE_ADVERTISEMENT: u8 = 1;
/// VRRPv2 authentication type "simple text password" (RFC 2338 5.3.6, kept by keepalived).
const AUTH_SIMPLE: u8 = 1;

/// VRRP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// RFC 3768 (IPv4 only; interval in seconds; optional password).
    V2,
    /// RFC 5798 (IPv4 and IPv6; interval in centiseconds; checksum with pseudo-header).
    V3,
}

/// One advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id (1-255).
    pub vrid: u8,
    /// Sender's priority (0: master leaving; 255: address owner).
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2 carries whole seconds).
    pub interval_cs: u16,
    /// The virtual addresses.
    pub addrs: Vec<IpAddr>,
    /// VRRPv2 simple password (8 bytes, zero padded), if authentication is on.
    pub password: Option<[u8; 8]>,
}

/// Why a received packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than its header or than its address list says.
    #[error("truncated")]
    Truncated,
    /// Version field is not the instance's.
    #[error("bad version {0}")]
    BadVersion(u8),
    /// Type is not advertisement.
    #[error("bad type {0}")]
    BadType(u8),
    /// Checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// The address count disagrees with the packet's length.
    #[error("address count {count} does not match the length")]
    AddressCount {
        /// Count field.
        count: u8,
    },
    /// An interval of zero.
    #[error("advertisement interval 0")]
    ZeroInterval,
    /// Authentication type or password differs from ours (v2).
    #[error("authentication mismatch")]
    AuthMismatch,
    /// Not sent with TTL / hop limit 255 (so it came from off-link).
    #[error("TTL {0} is not 255")]
    WrongTtl(u8),
    /// Another virtual router's packet.
    #[error("VRID {0} is not ours")]
    WrongVrid(u8),
    /// IPv6 in VRRPv2.
    #[error("VRRPv2 carries IPv4 only")]
    FamilyMismatch,
}

fn sum16(bytes: &[u8], mut sum: u32) -> u32 {
    for chunk in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The checksum of `message` (its checksum field zeroed or not: that word is skipped);
/// VRRPv3 includes the IP pseudo-header (RFC 5798 5.2.8), VRRPv2 does not.
fn checksum(version: Version, message: &[u8], src: IpAddr, dst: IpAddr) -> u16 {
    let mut zeroed = message.to_vec();
    zeroed[6] = 0;
    zeroed[7] = 0;
    let mut sum = 0;
    if version == Version::V3 {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                sum = sum16(&s.octets(), sum);
                sum = sum16(&d.octets(), sum);
                sum += u32::from(IPPROTO_VRRP);
                sum += message.len() as u32;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                sum = sum16(&s.octets(), sum);
                sum = sum16(&d.octets(), sum);
                sum += message.len() as u32;
                sum += u32::from(IPPROTO_VRRP);
            }
            _ => {}
        }
    }
    fold(sum16(&zeroed, sum))
}

impl Advert {
    /// The VRRP message (without IP header) as sent from `src` to `dst`.
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let version = match self.version {
            Version::V2 => 2u8,
            Version::V3 => 3u8,
        };
        let mut out = vec![
            (version << 4) | TYPE_ADVERTISEMENT,
            self.vrid,
            self.priority,
            self.addrs.len() as u8,
        ];
        match self.version {
            Version::V2 => {
                out.push(if self.password.is_some() {
                    AUTH_SIMPLE
                } else {
                    0
                });
                out.push((self.interval_cs / 100).clamp(1, 255) as u8);
            }
            Version::V3 => out.extend_from_slice(&(self.interval_cs & 0x0fff).to_be_bytes()),
        }
        out.extend_from_slice(&[0, 0]);
        for addr in &self.addrs {
            match addr {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            out.extend_from_slice(&self.password.unwrap_or([0; 8]));
        }
        let sum = checksum(self.version, &out, src, dst);
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// Parses and verifies a VRRP message (without IP header) received from `src` for `dst`.
    /// The address family of the addresses follows `src`.
    pub fn decode(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, PacketError> {
        if bytes.len() < 8 {
            return Err(PacketError::Truncated);
        }
        let version = match bytes[0] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            other => return Err(PacketError::BadVersion(other)),
        };
        if bytes[0] & 0x0f != TYPE_ADVERTISEMENT {
            return Err(PacketError::BadType(bytes[0] & 0x0f));
        }
        if version == Version::V2 && src.is_ipv6() {
            return Err(PacketError::FamilyMismatch);
        }
        let count = bytes[3];
        let addr_len = if src.is_ipv4() { 4 } else { 16 };
        let auth_len = if version == Version::V2 { 8 } else { 0 };
        let expected = 8 + usize::from(count) * addr_len + auth_len;
        if bytes.len() < expected {
            return Err(
                if bytes.len() >= 8 + auth_len
                    && (bytes.len() - 8 - auth_len).is_multiple_of(addr_len)
                {
                    PacketError::AddressCount { count }
                } else {
                    PacketError::Truncated
                },
            );
        }
        if bytes.len() > expected {
            return Err(PacketError::AddressCount { count });
        }
        let stored = u16::from_be_bytes([bytes[6], bytes[7]]);
        if checksum(version, bytes, src, dst) != stored {
            return Err(PacketError::BadChecksum);
        }
        let (interval_cs, password) = match version {
            Version::V2 => {
                let password = match bytes[4] {
                    0 => None,
                    AUTH_SIMPLE => {
                        let mut p = [0u8; 8];
                        p.copy_from_slice(&bytes[expected - 8..expected]);
                        Some(p)
                    }
                    _ => return Err(PacketError::AuthMismatch),
                };
                (u16::from(bytes[5]) * 100, password)
            }
            Version::V3 => (u16::from_be_bytes([bytes[4], bytes[5]]) & 0x0fff, None),
        };
        if interval_cs == 0 {
            return Err(PacketError::ZeroInterval);
        }
        let addrs = bytes[8..8 + usize::from(count) * addr_len]
            .chunks(addr_len)
            .map(|chunk| match <[u8; 4]>::try_from(chunk) {
                Ok(v4) => IpAddr::from(v4),
                Err(_) => IpAddr::from(<[u8; 16]>::try_from(chunk).unwrap_or([0; 16])),
            })
            .collect();
        Ok(Advert {
            version,
            vrid: bytes[1],
            priority: bytes[2],
            interval_cs,
            addrs,
            password,
        })
    }
}

/// The password as it travels: up to 8 bytes, zero padded (keepalived cuts longer ones).
pub fn password_bytes(password: &str) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (dst, src) in out.iter_mut().zip(password.bytes()) {
        *dst = src;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// VRRPv3 advert from 192.168.1.1 to 224.0.0.18: VRID 51, priority 100, 1 s, one VIP.
    /// Checksum worked out apart from this code: pseudo-header words c0a8 0101 e000 0012
    /// 0070 000c (protocol 112, length 12), message words 3133 6401 0064 0000 c0a8 01c9;
    /// one's-complement sum fa42, complemented 05bd.
    const V3_BYTES: [u8; 12] = [0x31, 51, 100, 1, 0x00, 0x64, 0x05, 0xbd, 192, 168, 1, 201];

    #[test]
    fn v3_ipv4_encodes_byte_exact_and_decodes_back() {
        let advert = Advert {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            addrs: vec![v4("192.168.1.201")],
            password: None,
        };
        let bytes = advert.encode(v4("192.168.1.1"), v4("224.0.0.18"));
        assert_eq!(bytes, V3_BYTES);
        assert_eq!(
            Advert::decode(&bytes, v4("192.168.1.1"), v4("224.0.0.18")),
            Ok(advert)
        );
    }

    #[test]
    fn v2_with_password_round_trips_and_checksum_has_no_pseudo_header() {
        let advert = Advert {
            version: Version::V2,
            vrid: 51,
            priority: 150,
            interval_cs: 100,
            addrs: vec![v4("192.168.1.201"), v4("192.168.1.202")],
            password: Some(password_bytes("secret")),
        };
        let bytes = advert.encode(v4("192.168.1.1"), v4("224.0.0.18"));
        assert_eq!(&bytes[..6], &[0x21, 51, 150, 2, 1, 1]);
        assert_eq!(&bytes[16..], b"secret\0\0");
        // The same bytes verify whatever the addresses: v2 has no pseudo-header.
        assert_eq!(
            Advert::decode(&bytes, v4("10.9.9.9"), v4("224.0.0.18")),
            Ok(advert)
        );
        let sum: u32 = bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        assert_eq!(fold(sum), 0, "a correct checksum sums to all ones");
    }

    #[test]
    fn v3_ipv6_checksum_covers_the_pseudo_header() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst: IpAddr = "ff02::12".parse().unwrap();
        let advert = Advert {
            version: Version::V3,
            vrid: 7,
            priority: 200,
            interval_cs: 10,
            addrs: vec!["fe80::7".parse().unwrap(), "2001:db8::7".parse().unwrap()],
            password: None,
        };
        let bytes = advert.encode(src, dst);
        assert_eq!(bytes.len(), 8 + 32);
        assert_eq!(Advert::decode(&bytes, src, dst), Ok(advert));
        let other: IpAddr = "fe80::2".parse().unwrap();
        assert_eq!(
            Advert::decode(&bytes, other, dst),
            Err(PacketError::BadChecksum)
        );
    }

    #[test]
    fn malformed_packets_get_typed_errors() {
        let (s, d) = (v4("192.168.1.1"), v4("224.0.0.18"));
        let mut bad_version = V3_BYTES;
        bad_version[0] = 0x41;
        let mut bad_type = V3_BYTES;
        bad_type[0] = 0x32;
        let mut bad_sum = V3_BYTES;
        bad_sum[7] ^= 1;
        let mut zero_interval = V3_BYTES.to_vec();
        zero_interval[4] = 0;
        zero_interval[5] = 0;
        let sum = checksum(Version::V3, &zero_interval, s, d);
        zero_interval[6..8].copy_from_slice(&sum.to_be_bytes());
        let mut two_addrs_claimed = V3_BYTES;
        two_addrs_claimed[3] = 2;
        let cases: Vec<(&str, Vec<u8>, PacketError)> = vec![
            ("empty", vec![], PacketError::Truncated),
            ("header cut", V3_BYTES[..7].to_vec(), PacketError::Truncated),
            (
                "version 4",
                bad_version.to_vec(),
                PacketError::BadVersion(4),
            ),
            ("type 2", bad_type.to_vec(), PacketError::BadType(2)),
            ("checksum", bad_sum.to_vec(), PacketError::BadChecksum),
            ("interval 0", zero_interval, PacketError::ZeroInterval),
            (
                "count 2, one address",
                two_addrs_claimed.to_vec(),
                PacketError::AddressCount { count: 2 },
            ),
            (
                "trailing bytes",
                [V3_BYTES.as_slice(), &[0, 0, 0, 0]].concat(),
                PacketError::AddressCount { count: 1 },
            ),
            (
                "address cut",
                V3_BYTES[..10].to_vec(),
                PacketError::Truncated,
            ),
        ];
        for (what, bytes, expected) in cases {
            assert_eq!(Advert::decode(&bytes, s, d), Err(expected), "{what}");
        }
        let v2 = Advert {
            version: Version::V2,
            vrid: 1,
            priority: 1,
            interval_cs: 100,
            addrs: vec![],
            password: None,
        }
        .encode(s, d);
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(
            Advert::decode(&v2, v6, "ff02::12".parse().unwrap()),
            Err(PacketError::FamilyMismatch)
        );
    }
}
