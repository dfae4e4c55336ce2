//! Proxy counters per frontend, backend and server: plain atomics bumped on the request path
//! (no locks), read by the runtime API's `show stat`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of one frontend, backend or server (HAProxy's `show stat` columns).
#[derive(Debug, Default)]
pub struct Counters {
    /// Sessions now (connections for frontends, requests in flight otherwise).
    pub current: AtomicU64,
    /// Highest `current` seen.
    pub max: AtomicU64,
    /// Sessions since start.
    pub total: AtomicU64,
    /// Request bytes received from clients.
    pub bytes_in: AtomicU64,
    /// Response bytes sent to clients.
    pub bytes_out: AtomicU64,
    /// Responses by status class: 1xx .. 5xx, then anything else.
    pub responses: [AtomicU64; 6],
    /// Failed connection attempts to servers.
    pub connect_errors: AtomicU64,
    /// Connection retries.
    pub retries: AtomicU64,
    /// Requests moved to another server than the one first chosen.
    pub redispatches: AtomicU64,
    /// Requests waiting for a server slot now.
    pub queued: AtomicU64,
    /// Highest `queued` seen.
    pub queue_max: AtomicU64,
    /// Requests refused by the proxy itself (400, 408, queue timeout, no server).
    pub denied: AtomicU64,
    /// Requests the client broke off or spoiled while they were being forwarded (a
    /// malformed or stalled body: HAProxy's `cli_abrt`); not counted against the server.
    pub client_aborts: AtomicU64,
}

impl Counters {
    /// A session starts; the returned guard ends it when dropped.
    pub fn enter(&self) -> Session<'_> {
        let now = self.current.fetch_add(1, Relaxed) + 1;
        self.max.fetch_max(now, Relaxed);
        self.total.fetch_add(1, Relaxed);
        Session(&self.current)
    }

    /// A request starts waiting in the queue; the guard leaves it when dropped.
    pub fn queue(&self) -> Session<'_> {
        let now = self.queued.fetch_add(1, Relaxed) + 1;
        self.queue_max.fetch_max(now, Relaxed);
        Session(&self.queued)
    }

    /// Counts a response with `status`.
    pub fn response(&self, status: u16) {
        let class = match status {
            100..=599 => usize::from(status / 100) - 1,
            _ => 5,
        };
        self.responses[class].fetch_add(1, Relaxed);
    }

    /// One line of `show stat`: `name cur max total bytes_in bytes_out 1xx 2xx 3xx 4xx 5xx
    /// other conn_err retries redisp queue queue_max denied cli_abrt`.
    pub fn render(&self, name: &str) -> String {
        let r: Vec<u64> = self.responses.iter().map(|a| a.load(Relaxed)).collect();
        format!(
            "{name:<28} {:>5} {:>5} {:>8} {:>12} {:>12} {:>6} {:>8} {:>6} {:>6} {:>6} {:>5} {:>7} {:>7} {:>6} {:>5} {:>5} {:>6} {:>8}",
            self.current.load(Relaxed),
            self.max.load(Relaxed),
            self.total.load(Relaxed),
            self.bytes_in.load(Relaxed),
            self.bytes_out.load(Relaxed),
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            self.connect_errors.load(Relaxed),
            self.retries.load(Relaxed),
            self.redispatches.load(Relaxed),
            self.queued.load(Relaxed),
            self.queue_max.load(Relaxed),
            self.denied.load(Relaxed),
            self.client_aborts.load(Relaxed),
        )
    }
}

/// Header of [`Counters::render`] lines.
pub const HEADER: &str = "name                          cur   max    total     bytes_in    bytes_out    1xx      2xx    3xx    4xx    5xx other conn_er retries redisp queue  qmax denied cli_abrt";

/// Decrements a gauge when dropped.
pub struct Session<'a>(&'a AtomicU64);

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_track_current_max_and_total() {
        let c = Counters::default();
        {
            let _a = c.enter();
            let _b = c.enter();
            assert_eq!(c.current.load(Relaxed), 2);
        }
        let _c = c.enter();
        assert_eq!(
            (
                c.current.load(Relaxed),
                c.max.load(Relaxed),
                c.total.load(Relaxed)
            ),
            (1, 2, 3)
        );
        c.response(204);
        c.response(503);
        c.response(99);
        assert_eq!(c.responses[1].load(Relaxed), 1);
        assert_eq!(c.responses[4].load(Relaxed), 1);
        assert_eq!(c.responses[5].load(Relaxed), 1);
        assert!(c.render("fe").starts_with("fe "));
    }
}
