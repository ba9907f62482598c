//! The frames a WebSocket has queued but not yet handed to its socket, with coalescing.
//!
//! The edge keeps outgoing frames here rather than in tungstenite's write buffer so that it
//! knows how many bytes each client pins (the limit), and so that a frame that carries only
//! the latest state of something (a producer paused or resumed) can replace its unsent
//! predecessor: a client that reads slower than the state changes then gets one frame per
//! thing, not one per change.

use std::collections::{HashMap, VecDeque};

/// Memory a queued frame costs beyond its text (its `String`, its slot, the allocator's
/// header), counted so that many tiny frames cannot slip under the byte limits.
pub(super) const FRAME_OVERHEAD: usize = 64;
/// Slots kept allocated once the queue drains; a burst's peak capacity is given back.
const KEEP_SLOTS: usize = 16;

/// What a queued frame holds in memory: its allocation, not just its text.
pub(super) fn cost(text: &String) -> usize {
    text.capacity() + FRAME_OVERHEAD
}

#[derive(Debug, Default)]
pub(super) struct OutQueue {
    frames: VecDeque<(Option<String>, String)>,
    /// Sequence number of `frames[0]`; frame `i` has `head + i`.
    head: u64,
    /// Key → sequence number of the queued frame carrying it.
    keyed: HashMap<String, u64>,
    bytes: usize,
}

impl OutQueue {
    /// Queues `text`, or replaces the queued frame with the same key. Returns how many bytes
    /// (with [`FRAME_OVERHEAD`]) the queue grew (negative: shrank).
    pub(super) fn push(&mut self, key: Option<String>, mut text: String) -> isize {
        // serde_json grows its buffer by doubling: up to half of a frame can be slack.
        text.shrink_to_fit();
        if let Some(seq) = key.as_ref().and_then(|k| self.keyed.get(k)) {
            let slot = &mut self.frames[(seq - self.head) as usize].1;
            let delta = cost(&text) as isize - cost(slot) as isize;
            self.bytes = self.bytes.saturating_add_signed(delta);
            *slot = text;
            return delta;
        }
        if let Some(k) = &key {
            self.keyed
                .insert(k.clone(), self.head + self.frames.len() as u64);
        }
        let len = cost(&text);
        self.bytes += len;
        self.frames.push_back((key, text));
        len as isize
    }

    pub(super) fn pop(&mut self) -> Option<String> {
        let (key, text) = self.frames.pop_front()?;
        if let Some(k) = key {
            self.keyed.remove(&k);
        }
        self.head += 1;
        self.bytes = self.bytes.saturating_sub(cost(&text));
        if self.frames.is_empty() && self.frames.capacity() > KEEP_SLOTS {
            self.frames.shrink_to(KEEP_SLOTS);
            self.keyed.shrink_to(KEEP_SLOTS);
        }
        Some(text)
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops everything (the connection is closing); returns the bytes released.
    pub(super) fn clear(&mut self) -> usize {
        let bytes = self.bytes;
        *self = OutQueue {
            head: self.head,
            ..OutQueue::default()
        };
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyed_frame_replaces_its_unsent_predecessor_in_place() {
        let mut q = OutQueue::default();
        q.push(None, "a".into());
        q.push(Some("p1".into()), "paused".into());
        q.push(None, "b".into());
        assert_eq!(q.push(Some("p1".into()), "resumed".into()), 1);
        q.push(Some("p2".into()), "x".into());
        assert_eq!(q.bytes(), 1 + 7 + 1 + 1 + 4 * FRAME_OVERHEAD);
        let all: Vec<String> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(all, ["a", "resumed", "b", "x"]);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn once_sent_a_key_starts_a_new_frame() {
        let mut q = OutQueue::default();
        q.push(Some("k".into()), "1".into());
        assert_eq!(q.pop().as_deref(), Some("1"));
        q.push(None, "other".into());
        q.push(Some("k".into()), "2".into());
        q.push(Some("k".into()), "3".into());
        assert_eq!(q.pop().as_deref(), Some("other"));
        assert_eq!(q.pop().as_deref(), Some("3"));
        assert!(q.is_empty());
    }

    #[test]
    fn clear_releases_every_byte() {
        let mut q = OutQueue::default();
        q.push(Some("k".into()), "abc".into());
        q.push(None, "de".into());
        assert_eq!(q.clear(), 5 + 2 * FRAME_OVERHEAD);
        assert!(q.is_empty());
        q.push(Some("k".into()), "f".into());
        assert_eq!(q.pop().as_deref(), Some("f"));
    }
}
