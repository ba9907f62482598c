//! Datagrams waiting to be sent, packed back to back into one reused buffer: after warm-up,
//! queueing a datagram allocates nothing (the forwarder's "no allocation per packet" rule).

use super::remote::Remote;

#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    items: Vec<(Remote, usize, usize)>,
}

impl Outbox {
    pub fn with_capacity(datagrams: usize) -> Self {
        Self {
            buf: Vec::with_capacity(datagrams * 1500),
            items: Vec::with_capacity(datagrams),
        }
    }

    /// Queues a copy of `data` for `to`.
    pub fn push(&mut self, to: Remote, data: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(data);
        self.items.push((to, start, self.buf.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The queued datagrams in order.
    pub fn iter(&self) -> impl Iterator<Item = (Remote, &[u8])> {
        self.items
            .iter()
            .map(|&(to, start, end)| (to, &self.buf[start..end]))
    }

    /// The queued datagrams in order, from the `start`-th on.
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = (Remote, &[u8])> {
        self.items[start.min(self.items.len())..]
            .iter()
            .map(|&(to, start, end)| (to, &self.buf[start..end]))
    }

    /// The `i`-th queued datagram.
    pub fn get(&self, i: usize) -> Option<(Remote, &[u8])> {
        let &(to, start, end) = self.items.get(i)?;
        Some((to, &self.buf[start..end]))
    }

    /// Empties the queue, keeping its capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_come_out_in_order_and_clear_keeps_capacity() {
        let a = Remote::Udp("127.0.0.1:1".parse().unwrap());
        let b = Remote::Udp("127.0.0.1:2".parse().unwrap());
        let mut o = Outbox::with_capacity(4);
        o.push(a, b"one");
        o.push(b, b"");
        o.push(a, b"three");
        let got: Vec<(Remote, Vec<u8>)> = o.iter().map(|(t, d)| (t, d.to_vec())).collect();
        assert_eq!(
            got,
            vec![(a, b"one".to_vec()), (b, vec![]), (a, b"three".to_vec())]
        );
        assert_eq!(o.get(2), Some((a, &b"three"[..])));
        assert_eq!(o.get(3), None);
        let rest: Vec<Remote> = o.iter_from(1).map(|(t, _)| t).collect();
        assert_eq!(rest, vec![b, a]);
        assert_eq!(o.iter_from(3).count(), 0);
        assert_eq!(o.iter_from(9).count(), 0);
        let cap = o.buf.capacity();
        o.clear();
        assert!(o.is_empty());
        assert_eq!(o.buf.capacity(), cap);
    }
}
