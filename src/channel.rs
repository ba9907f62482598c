//! Lock-free queues between the signaling thread, the DTLS thread and the glommio workers.
//!
//! A [`Mailbox`] is a `crossbeam_queue::SegQueue` (lock-free MPSC in practice) plus a way to
//! wake the consumer: an [`AtomicWaker`] for a glommio task, or a `mio::Waker` for the
//! signaling event loop. Producers never block and never take a lock.

use atomic_waker::AtomicWaker;
use crossbeam_queue::{ArrayQueue, SegQueue};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

enum Wake {
    Task(AtomicWaker),
    Mio(Arc<mio::Waker>),
}

/// Unbounded (control messages) or bounded and preallocated (media: a full queue drops, and
/// pushing never allocates).
enum Queue<T> {
    Unbounded(SegQueue<T>),
    Bounded(ArrayQueue<T>),
}

impl<T> Queue<T> {
    fn push(&self, value: T) -> Result<(), T> {
        match self {
            Queue::Unbounded(q) => {
                q.push(value);
                Ok(())
            }
            Queue::Bounded(q) => q.push(value),
        }
    }
    fn pop(&self) -> Option<T> {
        match self {
            Queue::Unbounded(q) => q.pop(),
            Queue::Bounded(q) => q.pop(),
        }
    }
    fn len(&self) -> usize {
        match self {
            Queue::Unbounded(q) => q.len(),
            Queue::Bounded(q) => q.len(),
        }
    }
}

struct Shared<T> {
    queue: Queue<T>,
    wake: Wake,
    closed: AtomicBool,
}

/// The sending half; cheap to clone, `Send + Sync` when `T: Send`.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// The receiving half; lives on exactly one thread.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A mailbox drained by a glommio (or any async) task.
pub fn task_mailbox<T>() -> (Sender<T>, Receiver<T>) {
    make(
        Wake::Task(AtomicWaker::new()),
        Queue::Unbounded(SegQueue::new()),
    )
}

/// A task mailbox holding at most `capacity` messages: `send` hands the value back when it is
/// full (the receiver is behind), and never allocates.
pub fn bounded_task_mailbox<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    make(
        Wake::Task(AtomicWaker::new()),
        Queue::Bounded(ArrayQueue::new(capacity.max(1))),
    )
}

/// A mailbox drained by a mio event loop, woken through `waker`.
pub fn mio_mailbox<T>(waker: Arc<mio::Waker>) -> (Sender<T>, Receiver<T>) {
    make(Wake::Mio(waker), Queue::Unbounded(SegQueue::new()))
}

fn make<T>(wake: Wake, queue: Queue<T>) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        queue,
        wake,
        closed: AtomicBool::new(false),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queues `value` and wakes the receiver. Returns the value back if the receiver is gone
    /// (or a bounded mailbox is full).
    pub fn send(&self, value: T) -> Result<(), T> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(value);
        }
        self.shared.queue.push(value)?;
        match &self.shared.wake {
            Wake::Task(w) => w.wake(),
            Wake::Mio(w) => {
                // A failed wake means the loop is shutting down; the message is then moot.
                let _ = w.wake();
            }
        }
        Ok(())
    }
}

impl<T> Sender<T> {
    /// True once the receiver is gone (its thread exited): nothing sent will be read.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

impl<T> Receiver<T> {
    pub fn try_recv(&self) -> Option<T> {
        self.shared.queue.pop()
    }

    /// Waits for the next message (task mailboxes only).
    pub fn recv(&self) -> Recv<'_, T> {
        Recv { rx: self }
    }

    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.queue.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        while self.shared.queue.pop().is_some() {}
    }
}

pub struct Recv<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let shared = &self.rx.shared;
        if let Some(v) = shared.queue.pop() {
            return Poll::Ready(v);
        }
        match &shared.wake {
            Wake::Task(w) => w.register(cx.waker()),
            Wake::Mio(_) => panic!("Receiver::recv() on a mio mailbox: drain it with try_recv()"),
        }
        // A message pushed between the first pop and register() must not be missed.
        match shared.queue.pop() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_from_another_thread_arrive_in_order() {
        let (tx, rx) = task_mailbox::<u32>();
        let t = std::thread::spawn(move || {
            for i in 0..1000 {
                tx.send(i).unwrap();
            }
        });
        let got: Vec<u32> = futures_lite::future::block_on(async {
            let mut v = Vec::new();
            while v.len() < 1000 {
                v.push(rx.recv().await);
            }
            v
        });
        t.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_bounded_mailbox_hands_the_value_back() {
        let (tx, rx) = bounded_task_mailbox::<u8>(2);
        assert_eq!(tx.send(1), Ok(()));
        assert_eq!(tx.send(2), Ok(()));
        assert_eq!(tx.send(3), Err(3));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(tx.send(4), Ok(()));
    }

    #[test]
    fn send_after_the_receiver_is_dropped_returns_the_value() {
        let (tx, rx) = task_mailbox::<u8>();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(7), Err(7));
    }
}
