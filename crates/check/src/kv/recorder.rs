//! [`Recorder`]: collects a history from concurrent clients with a shared logical clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::op::{Operation, Request, Response};

/// A thread-safe history under construction.
///
/// Times come from one atomic counter: a timestamp taken before sending a request and another taken after
/// its response arrives bracket the operation, so real-time order between operations is kept exactly.
#[derive(Debug, Default)]
pub struct Recorder {
    clock: AtomicU64,
    /// Finished operations; a std mutex is enough, the critical section is one push.
    ops: Mutex<Vec<Operation>>,
}

impl Recorder {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A timestamp: take one just before sending a request and pass it to [`Recorder::record`].
    pub fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// Records an operation called at `call` whose response (`None`: failed or timed out) arrived just now.
    pub fn record(&self, client: u64, call: u64, request: Request, response: Option<Response>) {
        let ret = self.now();
        let op = Operation { client, call, ret, request, response };
        self.ops.lock().unwrap_or_else(PoisonError::into_inner).push(op);
    }

    /// The operations recorded so far, in the order they returned.
    pub fn history(&self) -> Vec<Operation> {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
