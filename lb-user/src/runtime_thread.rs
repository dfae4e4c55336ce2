//! A thread with a tokio runtime of its own, for work the proxy must not be able to delay:
//! health checks (a late check is a false DOWN) and VRRP (a late advertisement is a false
//! failover). HAProxy and keepalived get the same separation from being two processes.

use tokio::{runtime::Handle, sync::oneshot};

/// The thread and its runtime; tasks are spawned with [`RuntimeThread::handle`]. Dropping
/// it stops the runtime (its tasks are dropped) and waits for the thread.
pub struct RuntimeThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RuntimeThread {
    /// Starts a current-thread runtime on a thread called `name`.
    pub fn start(name: &str) -> std::io::Result<RuntimeThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Spawned tasks run while this waits for the stop.
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
            })?;
        Ok(RuntimeThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where to spawn tasks.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_the_thread_and_stop_with_it() {
        let thread = RuntimeThread::start("lb-test").expect("thread");
        let (tx, rx) = std::sync::mpsc::channel();
        thread.handle().spawn(async move {
            let name = std::thread::current().name().map(str::to_string);
            let _ = tx.send(name);
        });
        let ran_on = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the task ran");
        assert_eq!(ran_on.as_deref(), Some("lb-test"));
        let forever = thread.handle().spawn(std::future::pending::<()>());
        drop(thread);
        assert!(forever.is_finished(), "tasks end with the runtime");
    }
}
