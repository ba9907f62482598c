//! The VP8 payload descriptor fields an SFU rewrites (RFC 7741 §4.2): PictureID and
//! TL0PICIDX. Each simulcast encoding numbers its pictures on its own (from a random start),
//! so a stream that switches encodings would jump; a receiver takes a jump back for pictures
//! it already decoded past and drops every frame until its next key-frame request is
//! answered (Chromium, seen as a freeze of seconds after a layer switch). [`Continuity`] keeps
//! the numbers of a forwarded stream consecutive across its forwarder's sync points.
//! In place, no allocation; a descriptor too short for what it announces is left alone.

/// Where a payload's rewritable fields are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Offset of the PictureID and whether it is 15 bits wide (M bit) rather than 7.
    pub picture_id: Option<(usize, bool)>,
    /// Offset of TL0PICIDX.
    pub tl0_pic_idx: Option<usize>,
    /// Offset of the VP8 payload header (the frame tag, on a partition's first packet).
    pub header_at: usize,
}

/// Parses the descriptor at the start of `payload`; None when it is cut short.
pub fn parse(payload: &[u8]) -> Option<Descriptor> {
    let first = *payload.first()?;
    let mut d = Descriptor {
        picture_id: None,
        tl0_pic_idx: None,
        header_at: 1,
    };
    if first & 0x80 == 0 {
        return Some(d);
    }
    let ext = *payload.get(1)?;
    let mut at = 2;
    if ext & 0x80 != 0 {
        let wide = *payload.get(at)? & 0x80 != 0;
        if wide {
            payload.get(at + 1)?;
        }
        d.picture_id = Some((at, wide));
        at += if wide { 2 } else { 1 };
    }
    if ext & 0x40 != 0 {
        payload.get(at)?;
        d.tl0_pic_idx = Some(at);
        at += 1;
    }
    if ext & 0x30 != 0 {
        payload.get(at)?; // TID / Y / KEYIDX
        at += 1;
    }
    d.header_at = at;
    Some(d)
}

const PID_MOD: u16 = 0x8000;

/// A forwarded stream's PictureID / TL0PICIDX mapping: offsets fixed at each sync point so the
/// first picture after it follows the last one sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Continuity {
    pid_offset: u16,
    tl0_offset: u8,
    /// The newest values sent (output numbering).
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    /// The next packet starts a new sync: the offsets are fixed from it.
    resync: bool,
}

impl Continuity {
    /// The stream synced anew (another encoding, or after a pause): the next packet rewritten
    /// fixes the offsets.
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// Rewrites the descriptor at the start of `payload`, a packet forwarded in order (it
    /// updates the newest numbers sent).
    /// `d` is `payload`'s descriptor ([`parse`]; the same for every copy of a packet).
    pub fn forward(&mut self, payload: &mut [u8], d: &Descriptor) {
        if std::mem::take(&mut self.resync) {
            if let (Some((at, _)), Some(last)) = (d.picture_id, self.last_pid) {
                let pid = read_pid(payload, at);
                self.pid_offset = last.wrapping_add(1).wrapping_sub(pid) % PID_MOD;
            }
            if let (Some(at), Some(last)) = (d.tl0_pic_idx, self.last_tl0) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(payload[at]);
            }
        }
        let (pid, tl0) = self.apply(payload, d);
        if let Some(pid) = pid {
            if self.last_pid.is_none_or(|l| pid_newer(pid, l)) {
                self.last_pid = Some(pid);
            }
        }
        if let Some(tl0) = tl0 {
            if self
                .last_tl0
                .is_none_or(|l| tl0 != l && tl0.wrapping_sub(l) < 0x80)
            {
                self.last_tl0 = Some(tl0);
            }
        }
    }

    /// Rewrites a retransmitted packet's descriptor with the current offsets (it was sent
    /// after the current sync point) without touching the stream's state.
    pub fn retransmit(&self, payload: &mut [u8]) {
        if let Some(d) = parse(payload) {
            self.apply(payload, &d);
        }
    }

    fn apply(&self, payload: &mut [u8], d: &Descriptor) -> (Option<u16>, Option<u8>) {
        let pid = d.picture_id.map(|(at, wide)| {
            let out = read_pid(payload, at).wrapping_add(self.pid_offset) % PID_MOD;
            if wide {
                payload[at] = 0x80 | (out >> 8) as u8;
                payload[at + 1] = out as u8;
            } else {
                payload[at] = (out & 0x7F) as u8;
            }
            out
        });
        let tl0 = d.tl0_pic_idx.map(|at| {
            payload[at] = payload[at].wrapping_add(self.tl0_offset);
            payload[at]
        });
        (pid, tl0)
    }
}

/// The PictureID at `at` (15 bits, or 7).
fn read_pid(payload: &[u8], at: usize) -> u16 {
    if payload[at] & 0x80 != 0 {
        u16::from_be_bytes([payload[at] & 0x7F, payload[at + 1]])
    } else {
        u16::from(payload[at])
    }
}

/// Whether 15-bit PictureID `a` is newer than `b`.
fn pid_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) % PID_MOD < PID_MOD / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A descriptor with a 15-bit PictureID, TL0PICIDX and TID, then a VP8 payload byte.
    fn packet(pid: u16, tl0: u8, tid: u8) -> Vec<u8> {
        vec![
            0x90,
            0xE0,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
            tid << 6,
            0x00,
        ]
    }

    fn fields(p: &[u8]) -> (u16, u8, usize) {
        let d = parse(p).unwrap();
        (
            read_pid(p, d.picture_id.unwrap().0),
            p[d.tl0_pic_idx.unwrap()],
            d.header_at,
        )
    }

    fn forward(c: &mut Continuity, p: &mut [u8]) {
        let d = parse(p).unwrap();
        c.forward(p, &d);
    }

    #[test]
    fn parses_the_fields_and_refuses_a_cut_descriptor() {
        let p = packet(0x1234, 7, 2);
        assert_eq!(fields(&p), (0x1234, 7, 6));
        for n in 0..6 {
            assert_eq!(parse(&p[..n]), None, "cut at {n}");
        }
        assert_eq!(parse(&[0x10, 0x9d]).unwrap().picture_id, None);
        // A 7-bit PictureID.
        let short = [0x90, 0x80, 0x25, 0x9d];
        assert_eq!(parse(&short).unwrap().picture_id, Some((2, false)));
    }

    #[test]
    fn a_switch_to_another_encoding_continues_the_numbers() {
        let mut c = Continuity::default();
        // Encoding A: pictures 30000.. (TL0 200..), forwarded unchanged at first.
        c.resync();
        let mut last = (0, 0);
        for i in 0..10u16 {
            let mut p = packet(30_000 + i, 200u8.wrapping_add((i / 2) as u8), (i % 2) as u8);
            forward(&mut c, &mut p);
            let (pid, tl0, _) = fields(&p);
            assert_eq!(pid, 30_000 + i);
            last = (pid, tl0);
        }
        // Encoding B numbers from 5 (TL0 250): a jump back, which the rewrite hides.
        c.resync();
        for i in 0..4u16 {
            let mut p = packet(5 + i, 250, 0);
            forward(&mut c, &mut p);
            let (pid, tl0, _) = fields(&p);
            assert_eq!(pid, last.0 + 1 + i);
            assert_eq!(tl0, last.1.wrapping_add(1));
        }
        // A retransmission of B's first packet gets the same numbers, and leaves the state.
        let mut r = packet(5, 250, 0);
        c.retransmit(&mut r);
        assert_eq!(fields(&r).0, last.0 + 1);
        let mut p = packet(9, 251, 0);
        forward(&mut c, &mut p);
        assert_eq!(fields(&p), (last.0 + 5, last.1.wrapping_add(2), 6));
    }

    #[test]
    fn numbers_wrap_within_their_width() {
        let mut c = Continuity::default();
        c.resync();
        let mut p = packet(0x7FFF, 255, 0);
        forward(&mut c, &mut p);
        c.resync();
        let mut q = packet(100, 3, 0);
        forward(&mut c, &mut q);
        assert_eq!(fields(&q), (0, 0, 6));
        // A 7-bit PictureID keeps to 7 bits.
        let mut s = [0x90, 0x80, 0x7F, 0x9d];
        c.resync();
        forward(&mut c, &mut s);
        assert_eq!(s[2] & 0x80, 0);
    }
}
