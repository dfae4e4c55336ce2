//! The instance's interface over netlink: its index, MAC and primary IPv4 address, and adding
//! and removing the virtual addresses.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::LinkAttribute,
};
use rtnetlink::Handle;

/// Facts about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Index.
    pub index: u32,
    /// MAC address.
    pub mac: [u8; 6],
    /// First IPv4 address that is not one of `exclude` (the virtual addresses).
    pub primary_v4: Option<Ipv4Addr>,
    /// Its IPv6 link-local address (VRRP for IPv6 is sent from it).
    pub link_local_v6: Option<std::net::Ipv6Addr>,
}

/// Errors from netlink.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// Netlink failed.
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    /// No such interface.
    #[error("interface `{0}` does not exist")]
    NoInterface(String),
}

/// Reads `name`'s index, MAC and primary address (ignoring `exclude`).
pub async fn interface(
    handle: &Handle,
    name: &str,
    exclude: &[IpAddr],
) -> Result<Interface, AddrError> {
    let link = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(|_| AddrError::NoInterface(name.to_string()))?
        .ok_or_else(|| AddrError::NoInterface(name.to_string()))?;
    let mac = link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(m) => <[u8; 6]>::try_from(m.as_slice()).ok(),
            _ => None,
        })
        .unwrap_or([0; 6]);
    let index = link.header.index;
    let mut primary_v4 = None;
    let mut link_local_v6 = None;
    for message in addresses(handle, index).await? {
        match address_of(&message) {
            Some(IpAddr::V4(addr))
                if primary_v4.is_none() && !exclude.contains(&IpAddr::V4(addr)) =>
            {
                primary_v4 = Some(addr)
            }
            Some(IpAddr::V6(addr)) if link_local_v6.is_none() && addr.is_unicast_link_local() => {
                link_local_v6 = Some(addr)
            }
            _ => {}
        }
    }
    Ok(Interface {
        index,
        mac,
        primary_v4,
        link_local_v6,
    })
}

async fn addresses(handle: &Handle, index: u32) -> Result<Vec<AddressMessage>, AddrError> {
    Ok(handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await?)
}

fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        })
        .or_else(|| {
            message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        })
}

/// Adds `addr/prefix` (with an optional IPv4 `label`) to interface `index` (already there
/// is fine).
pub async fn add(
    handle: &Handle,
    index: u32,
    addr: IpAddr,
    prefix: u8,
    label: Option<&str>,
) -> Result<(), AddrError> {
    let mut request = handle.address().add(index, addr, prefix);
    if let Some(label) = label {
        request.message_mut().attributes.push(
            netlink_packet_route::address::AddressAttribute::Label(label.to_string()),
        );
    }
    if addr.is_ipv6() {
        // No duplicate address detection: the address moves between nodes by design, and
        // a tentative address would not answer for a second or more after every failover.
        request.message_mut().attributes.push(
            netlink_packet_route::address::AddressAttribute::Flags(
                netlink_packet_route::address::AddressFlags::Nodad,
            ),
        );
    }
    match request.execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes `addr` from interface `index` (already gone is fine).
pub async fn remove(handle: &Handle, index: u32, addr: IpAddr) -> Result<(), AddrError> {
    for message in addresses(handle, index).await? {
        if address_of(&message) == Some(addr) {
            handle.address().del(message).execute().await?;
        }
    }
    Ok(())
}
