//! Reload (SIGHUP, `lb reload`): the configuration file is read again and only what changed
//! is touched. Everything that can fail (parsing, validation, host checks, map sizes,
//! binding new listeners) happens before anything changes, so a refused reload leaves the
//! agent exactly as it was.
//!
//! Kept across a reload: listening sockets of addresses still configured, connections and
//! requests in flight (on the snapshot they started with), health state of servers whose
//! check did not change, VRRP instances whose settings did not change (state and addresses
//! untouched), the connection-table sync unless `[sync]` or the hash seed changed (then it
//! restarts, asking its peers for a copy again), ids of L4 services and reals (so connection-table entries stay valid), and
//! every map entry that is already right.

use std::time::Duration;

use super::{Running, check_host, map_sizes, real_addresses, start_instance};
use crate::{config, dataplane::model::L4Model, health};

/// How long a reload waits for the next hops of new reals.
const RESOLVE_PATIENCE: Duration = Duration::from_millis(500);

impl Running<'_> {
    /// Re-reads the configuration and applies it. Returns a one-line summary of what changed,
    /// or why nothing did.
    pub(super) async fn reload(&mut self) -> Result<String, String> {
        let config = config::load_file(&self.config_path).map_err(|e| e.to_string())?;
        check_host(&config).map_err(|e| e.to_string())?;
        let mut model = L4Model::from_config_keeping(&config, &self.model.ids());
        let sizes = map_sizes(&model);
        if sizes != self.sizes {
            return Err(format!(
                "the L4 maps would need other sizes ({sizes:?}, running with {:?}); restart the agent to apply this configuration",
                self.sizes
            ));
        }
        if config.global.maxconn != self.config.global.maxconn
            || config.global.threads != self.config.global.threads
            || config.global.bpf_dir != self.config.global.bpf_dir
        {
            return Err(
                "global maxconn, threads and bpf_dir apply at start-up; restart the agent to change them"
                    .to_string(),
            );
        }
        let targets = health::targets(&model, &config);
        let prepared = self
            .proxy
            .prepare(
                config.resolved.frontends.clone(),
                config.resolved.backends.clone(),
                model.services.len(),
            )
            .map_err(|e| format!("L7 frontend: {e}"))?;

        // From here on nothing can be refused. Health first: checks of the old layout stop
        // before the board takes the new one, so no stale result lands on a reused key.
        let (board, kept) = health::carry_over(&targets, &self.targets, &self.board);
        drop(self.checks.take());
        self.board_tx.send_replace(board.clone());
        // The main loop has seen this board: it must not treat it as a change of verdicts.
        self.board_rx.borrow_and_update();
        self.board = board;
        let proxy_report = self.proxy.commit(prepared);
        self.proxy.current().note_health(&self.board);

        // L4: new reals resolved, then the maps brought in line, diff only.
        let owned = self.ownership_tx.borrow().clone();
        let (covered, owned) = super::vip_ownership(&config, &owned);
        model.set_vip_ownership(&covered, &owned);
        let addrs = real_addresses(&model);
        let missing: Vec<_> = addrs
            .iter()
            .filter(|a| !self.nexthops.contains_key(a))
            .copied()
            .collect();
        if !missing.is_empty() {
            match self.resolver.resolve_all(&missing, RESOLVE_PATIENCE).await {
                Ok(found) => self.nexthops.extend(found),
                Err(error) => tracing::warn!(%error, "resolving the next hops of new reals"),
            }
        }
        self.nexthops.retain(|addr, _| addrs.contains(addr));
        self.addrs = addrs;
        self.model = model;
        self.targets = targets;
        let old_config = std::mem::replace(&mut self.config, config);
        let map_report = self.sync_maps().map_err(|e| format!("L4 maps: {e}"))?;
        for interface in &old_config.interfaces {
            let name = interface.name.get_ref();
            if !self
                .config
                .interfaces
                .iter()
                .any(|i| i.name.get_ref() == name)
            {
                self.dataplane.detach(name);
            }
        }
        self.attach_all().map_err(|e| format!("XDP: {e}"))?;
        self.checks = Some(
            health::spawn(self.targets.clone(), self.board_tx.clone())
                .map_err(|e| format!("health checks: {e}"))?,
        );

        // VRRP: an instance whose settings did not change keeps running untouched.
        let wanted = self.config.resolved.vrrp.clone();
        let mut restarted = 0;
        let mut kept_instances = 0;
        let mut running = Vec::new();
        for instance in std::mem::take(&mut self.instances) {
            if wanted.contains(&instance.spec) {
                kept_instances += 1;
                running.push(instance);
            } else {
                let name = instance.spec.name.clone();
                instance.stop(crate::vrrp::instance::Stop::Leave).await;
                self.ownership_tx.send_modify(|o| {
                    std::sync::Arc::make_mut(o).remove(&name);
                });
            }
        }
        for spec in wanted {
            if !running.iter().any(|i| i.spec == spec) {
                restarted += 1;
                running.push(start_instance(
                    spec,
                    crate::vrrp::instance::Start::Elect,
                    &self.ownership_tx,
                    &self.applied_rx,
                    &self.copied_rx,
                    &self.board_rx,
                    self.vrrp_thread.handle(),
                ));
            }
        }
        self.instances = running;
        let sync = self.follow_sync_config().await;
        Ok(format!(
            "{} L4 services ({} written, {} removed), {} backends, {} frontends (listeners: {} opened, {} closed; {} frontends draining), health state kept for {kept} of {} checked servers, VRRP: {kept_instances} instances kept, {restarted} (re)started, sync {sync}",
            self.model.services.len(),
            map_report.services,
            map_report.services_removed,
            self.config.resolved.backends.len(),
            self.config.resolved.frontends.len(),
            proxy_report.opened,
            proxy_report.closed,
            proxy_report.retired_frontends,
            self.targets.len(),
        ))
    }
}
