//! `lb decap`: runs `lb_decap` on a real server in TUN mode, for the VIPs it serves.

use std::{future::Future, net::IpAddr, path::Path};

use aya::maps::{HashMap as BpfHashMap, MapData};
use lb_common::maps::{DECAP_PROGRAM, DECAP_VIPS_MAP, DecapKey};

use super::{
    loader::{Dataplane, DataplaneError, MapSizes},
    model::{addr_words, family},
};
use crate::config::XdpModeSetting;

/// The decap side needs no rings or connection table: keep those maps tiny.
const DECAP_SIZES: MapSizes = MapSizes {
    rings: 1,
    conns: 1024,
};

/// Loads `lb_decap`, fills its VIP set, attaches it to `interface`, and runs until `shutdown`.
pub async fn run(
    bpf_dir: &Path,
    interface: &str,
    vips: &[IpAddr],
    mode: XdpModeSetting,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DataplaneError> {
    let mut plane =
        Dataplane::load_program(crate::LB_EBPF_OBJECT, DECAP_PROGRAM, bpf_dir, DECAP_SIZES)?;
    let result = async {
        {
            let map = plane
                .ebpf_mut()
                .map_mut(DECAP_VIPS_MAP)
                .ok_or_else(|| DataplaneError::Missing(format!("map `{DECAP_VIPS_MAP}`")))?;
            let mut set: BpfHashMap<&mut MapData, DecapKey, u32> = BpfHashMap::try_from(map)?;
            for vip in vips {
                let key = DecapKey {
                    addr: addr_words(*vip),
                    family: u32::from(family(*vip)),
                };
                set.insert(key, 1, 0)?;
            }
        }
        plane.attach(interface, mode)?;
        tracing::info!(interface, vips = vips.len(), "lb decap running");
        shutdown.await;
        Ok(())
    }
    .await;
    plane.shutdown();
    result
}
