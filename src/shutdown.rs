//! The one shutdown signal, and the set of running listeners that obey it.
//!
//! Every listener (StatsD UDP threads and TCP, admin, HTTP, and the carbon
//! receivers to come) gets a [`Shutdown`] clone and is started through
//! [`Listeners`]. At shutdown the agent triggers the signal once and waits
//! for [`Listeners::drained`]: each listener stops accepting, takes what its
//! sockets still hold, and returns. Only then does the final flush run.

use std::future::Future;

use tokio::sync::watch;

/// A listener's view of the shutdown signal: cheap to clone, usable from
/// async tasks ([`Shutdown::wait`]) and OS threads ([`Shutdown::is_triggered`]).
#[derive(Debug, Clone)]
pub struct Shutdown {
    triggered: watch::Receiver<bool>,
}

/// Triggers the signal; held by the agent's run sequence.
#[derive(Debug)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

impl ShutdownTrigger {
    /// A new, untriggered signal.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, triggered) = watch::channel(false);
        (ShutdownTrigger { sender }, Shutdown { triggered })
    }

    /// Tells every holder of a [`Shutdown`] to stop.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }
}

impl Shutdown {
    /// True once shutdown was triggered (or the trigger is gone).
    pub fn is_triggered(&self) -> bool {
        *self.triggered.borrow() || self.triggered.has_changed().is_err()
    }

    /// Completes once shutdown is triggered (or the trigger is gone).
    pub async fn wait(&mut self) {
        while !*self.triggered.borrow_and_update() {
            if self.triggered.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The running listeners: async tasks and OS threads.
#[derive(Default)]
pub struct Listeners {
    tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
    threads: Vec<(String, std::thread::JoinHandle<()>)>,
}

impl Listeners {
    /// Runs `listener` as a task on the current runtime.
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        listener: impl Future<Output = ()> + Send + 'static,
    ) {
        self.tasks.push((name.into(), tokio::spawn(listener)));
    }

    /// Runs `listener` on an OS thread of its own, named `name`.
    pub fn spawn_thread(
        &mut self,
        name: impl Into<String>,
        listener: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let name = name.into();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(listener)?;
        self.threads.push((name, thread));
        Ok(())
    }

    /// Waits until every listener has returned (call after triggering the
    /// shutdown). A listener that panicked is logged.
    pub async fn drained(self) {
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for (name, thread) in threads {
                if thread.join().is_err() {
                    tracing::error!(listener = %name, "listener thread panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("could not join the listener threads");
        }
        for (name, task) in self.tasks {
            if task.await.is_err() {
                tracing::error!(listener = %name, "listener task panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_trigger_stops_tasks_and_threads() {
        let (trigger, shutdown) = ShutdownTrigger::new();
        let mut listeners = Listeners::default();
        let mut task_view = shutdown.clone();
        listeners.spawn("task", async move { task_view.wait().await });
        let thread_view = shutdown.clone();
        listeners
            .spawn_thread("thread", move || {
                while !thread_view.is_triggered() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            })
            .unwrap();
        assert!(!shutdown.is_triggered());
        trigger.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), listeners.drained())
            .await
            .expect("listeners stop once triggered");
        assert!(shutdown.is_triggered());
    }
}
