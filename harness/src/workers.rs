//! Client workers: single-threaded tokio runtimes, each on a thread of its own, that host the
//! client processes and their QUIC endpoints (thread per core).
//!
//! A client's tasks (its links, their readers, its process) wake each other for every INFORM;
//! in one multi-threaded runtime those wakes often cross threads, which costs more than the
//! work they carry. Here a client and everything it owns stay on one thread, and the clients
//! are spread over the workers in blocks that share an endpoint.

use std::future::Future;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The client worker threads.
pub struct Workers {
    handles: Vec<Handle>,
    shutdown: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` worker threads (at least one).
    ///
    /// # Errors
    ///
    /// When a runtime or thread cannot be created.
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let mut workers =
            Workers { handles: Vec::new(), shutdown: Vec::new(), threads: Vec::new() };
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            workers.handles.push(runtime.handle().clone());
            workers.shutdown.push(stop);
            let thread = std::thread::Builder::new().name(format!("client-worker-{index}")).spawn(
                move || {
                    // Tasks spawned on the runtime run while this waits for shutdown.
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                },
            )?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// The number of workers.
    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// Runs `make` inside worker `index`'s runtime (for things that spawn tasks or bind
    /// endpoints on it).
    pub fn enter<T>(&self, index: usize, make: impl FnOnce() -> T) -> T {
        let _guard = self.handles[index % self.handles.len()].enter();
        make()
    }

    /// Spawns `task` on worker `index`.
    pub fn spawn<F>(&self, index: usize, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[index % self.handles.len()].spawn(task)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for stop in self.shutdown.drain(..) {
            let _ = stop.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
