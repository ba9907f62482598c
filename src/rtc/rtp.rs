//! Zero-allocation RTP header view (RFC 3550) and the per-consumer header rewrite.
//!
//! Header extensions follow RFC 8285: one-byte form (profile 0xBEDE) and two-byte form
//! (profile 0x100X).

const FIXED_HEADER_LEN: usize = 12;
const PROFILE_ONE_BYTE: u16 = 0xBEDE;
const PROFILE_TWO_BYTE: u16 = 0x1000;
/// Largest element a one-byte-form extension can carry.
const ONE_BYTE_MAX_LEN: usize = 16;
/// Largest id a one-byte-form extension can carry (15 is reserved).
const ONE_BYTE_MAX_ID: u8 = 14;
/// The reserved one-byte id that ends processing of the block (RFC 8285 §4.2).
const ONE_BYTE_STOP_ID: u8 = 15;

/// Offsets and fields of one RTP packet; the bytes stay in the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc_count: u8,
    /// 0 when the packet has no extension block.
    pub ext_profile: u16,
    /// Start of the extension data (after the 4-byte profile/length word).
    pub ext_start: usize,
    /// Bytes of extension data.
    pub ext_len: usize,
    pub payload_start: usize,
    /// End of the payload, padding excluded.
    pub payload_end: usize,
    pub padding_len: u8,
}

impl RtpHeader {
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.payload_start..self.payload_end).unwrap_or(&[])
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the RTP header of `buf`; `None` unless it is a well-formed version-2 packet: CSRCs,
/// the extension block and every RFC 8285 element in it, and the padding all lie inside `buf`.
/// What it accepts is safe for every reader below (extensions, payload, rewrite).
pub fn parse_rtp(buf: &[u8]) -> Option<RtpHeader> {
    if buf.len() < FIXED_HEADER_LEN || buf[0] >> 6 != 2 {
        return None;
    }
    let has_padding = buf[0] & 0x20 != 0;
    let has_extension = buf[0] & 0x10 != 0;
    let csrc_count = buf[0] & 0x0f;
    let mut offset = FIXED_HEADER_LEN + 4 * csrc_count as usize;
    if buf.len() < offset {
        return None;
    }
    let (mut ext_profile, mut ext_start, mut ext_len) = (0, offset, 0);
    if has_extension {
        if buf.len() < offset + 4 {
            return None;
        }
        ext_profile = be16(buf, offset);
        ext_len = 4 * be16(buf, offset + 2) as usize;
        ext_start = offset + 4;
        offset = ext_start + ext_len;
        let block = buf.get(ext_start..offset)?;
        if !extension_elements_fit(ext_profile, block) {
            return None;
        }
    }
    let mut padding_len = 0u8;
    if has_padding {
        padding_len = *buf.last()?;
        if padding_len == 0 || buf.len() - offset < padding_len as usize {
            return None;
        }
    }
    Some(RtpHeader {
        marker: buf[1] & 0x80 != 0,
        payload_type: buf[1] & 0x7f,
        sequence: be16(buf, 2),
        timestamp: be32(buf, 4),
        ssrc: be32(buf, 8),
        csrc_count,
        ext_profile,
        ext_start,
        ext_len,
        payload_start: offset,
        payload_end: buf.len() - padding_len as usize,
        padding_len,
    })
}

/// Whether every RFC 8285 element of an extension block lies inside it. A packet whose
/// elements overrun the block is malformed: it is dropped whole rather than read partly (the
/// `rtp` crate panicked on such packets; nothing downstream must see one). Blocks of other
/// profiles are opaque to us and accepted.
fn extension_elements_fit(profile: u16, block: &[u8]) -> bool {
    let two_byte = profile & 0xfff0 == PROFILE_TWO_BYTE;
    if profile != PROFILE_ONE_BYTE && !two_byte {
        return true;
    }
    let mut pos = 0;
    while let Some(&first) = block.get(pos) {
        if first == 0 {
            pos += 1; // padding between elements
            continue;
        }
        let (header, len) = if two_byte {
            let Some(&len) = block.get(pos + 1) else {
                return false;
            };
            (2, len as usize)
        } else if first >> 4 == ONE_BYTE_STOP_ID {
            // The rest of the block is not to be processed (RFC 8285 §4.2).
            return true;
        } else {
            (1, (first & 0x0f) as usize + 1)
        };
        pos += header + len;
        if pos > block.len() {
            return false;
        }
    }
    true
}

/// Iterator over the header extensions of one packet (see [`extensions`]). It never reads past
/// the block, even for a header that did not come from [`parse_rtp`].
#[derive(Clone, Debug)]
pub struct Extensions<'a> {
    data: &'a [u8],
    pos: usize,
    two_byte: bool,
}

impl<'a> Iterator for Extensions<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let first = *self.data.get(self.pos)?;
            if first == 0 {
                // Padding between elements.
                self.pos += 1;
                continue;
            }
            let (id, len, header) = if self.two_byte {
                (first, *self.data.get(self.pos + 1)? as usize, 2)
            } else {
                let id = first >> 4;
                if id == ONE_BYTE_STOP_ID {
                    // Reserved id: stop processing the block (RFC 8285 §4.2).
                    self.pos = self.data.len();
                    return None;
                }
                (id, (first & 0x0f) as usize + 1, 1)
            };
            let start = self.pos + header;
            let Some(value) = self.data.get(start..start + len) else {
                self.pos = self.data.len();
                return None;
            };
            self.pos = start + len;
            return Some((id, value));
        }
    }
}

/// The header extensions of a parsed packet; empty for unknown extension profiles.
pub fn extensions<'a>(buf: &'a [u8], h: &RtpHeader) -> Extensions<'a> {
    let two_byte = h.ext_profile & 0xfff0 == PROFILE_TWO_BYTE;
    let known = h.ext_profile == PROFILE_ONE_BYTE || two_byte;
    let data = if known {
        h.ext_start
            .checked_add(h.ext_len)
            .and_then(|end| buf.get(h.ext_start..end))
            .unwrap_or(&[])
    } else {
        &[]
    };
    Extensions {
        data,
        pos: 0,
        two_byte,
    }
}

/// The value of extension `id`, if present.
pub fn find_extension<'a>(buf: &'a [u8], h: &RtpHeader, id: u8) -> Option<&'a [u8]> {
    extensions(buf, h).find(|&(i, _)| i == id).map(|(_, v)| v)
}

/// The RFC 6464 client-to-mixer audio level of a packet (extension `id`): the level in
/// -dBov (0 = loudest, 127 = silence; masked to 7 bits) and the voice-activity bit. `None` when
/// the packet carries no such element or it is empty.
pub fn audio_level(buf: &[u8], h: &RtpHeader, id: u8) -> Option<(u8, bool)> {
    let b = *find_extension(buf, h, id)?.first()?;
    Some((b & 0x7f, b & 0x80 != 0))
}

/// Maps incoming extension ids to a consumer's ids (index = incoming, value = outgoing, 0 = drop).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtIdMap(pub [u8; 256]);

impl Default for ExtIdMap {
    fn default() -> Self {
        Self::new()
    }
}

impl ExtIdMap {
    /// A map that drops every extension.
    pub fn new() -> Self {
        Self([0; 256])
    }

    pub fn set(&mut self, from: u8, to: u8) {
        self.0[from as usize] = to;
    }

    pub fn get(&self, from: u8) -> u8 {
        self.0[from as usize]
    }
}

/// What a consumer's copy of a packet gets instead of the producer's values.
#[derive(Clone, Copy, Debug)]
pub struct Rewrite<'a> {
    pub ssrc: u32,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ext_map: &'a ExtIdMap,
    /// The consumer's mid extension (id, value); the incoming mid must map to 0 in `ext_map`.
    pub mid: Option<(u8, &'a [u8])>,
    /// The sending transport's transport-wide sequence number (extension id, value); the
    /// incoming one must map to 0 in `ext_map`.
    pub twcc: Option<(u8, u16)>,
}

/// Writes into `out` (cleared first) the consumer's copy of the packet `src` parsed as `h`.
pub fn rewrite_into(src: &[u8], h: &RtpHeader, rw: &Rewrite, out: &mut Vec<u8>) {
    out.clear();
    let csrc_end = FIXED_HEADER_LEN + 4 * h.csrc_count as usize;
    let csrcs = src.get(FIXED_HEADER_LEN..csrc_end).unwrap_or(&[]);
    let payload_and_padding = src.get(h.payload_start..).unwrap_or(&[]);
    let padding_bit = if h.padding_len > 0 { 0x20 } else { 0 };
    out.reserve(FIXED_HEADER_LEN + csrcs.len() + h.ext_len + 24 + payload_and_padding.len());

    out.push(0x80 | padding_bit | (csrcs.len() / 4) as u8);
    out.push(((h.marker as u8) << 7) | (rw.payload_type & 0x7f));
    out.extend_from_slice(&rw.sequence.to_be_bytes());
    out.extend_from_slice(&rw.timestamp.to_be_bytes());
    out.extend_from_slice(&rw.ssrc.to_be_bytes());
    out.extend_from_slice(csrcs);

    let twcc = rw.twcc.map(|(id, seq)| (id, seq.to_be_bytes()));
    let kept = || {
        extensions(src, h)
            .map(|(id, v)| (rw.ext_map.get(id), v))
            .filter(|&(id, _)| id != 0)
            .chain(rw.mid.filter(|&(id, _)| id != 0))
            .chain(
                twcc.as_ref()
                    .map(|(id, v)| (*id, &v[..]))
                    .filter(|&(id, _)| id != 0),
            )
    };
    let needs_two_byte =
        |(id, v): (u8, &[u8])| id > ONE_BYTE_MAX_ID || v.is_empty() || v.len() > ONE_BYTE_MAX_LEN;
    let two_byte = kept().any(needs_two_byte);

    let block_start = out.len();
    let profile = if two_byte {
        PROFILE_TWO_BYTE
    } else {
        PROFILE_ONE_BYTE
    };
    out.extend_from_slice(&profile.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    for (id, value) in kept() {
        if two_byte {
            // Two-byte form cannot carry more than 255 bytes; such an element cannot exist in
            // a parsed packet, but a caller-provided mid could be that long.
            let Ok(len) = u8::try_from(value.len()) else {
                continue;
            };
            out.push(id);
            out.push(len);
        } else {
            out.push((id << 4) | (value.len() - 1) as u8);
        }
        out.extend_from_slice(value);
    }
    let words = (out.len() - block_start - 4).div_ceil(4);
    // A hostile block converted to two-byte form can outgrow the 16-bit length: drop it then.
    match u16::try_from(words) {
        Ok(words) if words > 0 => {
            out.resize(block_start + 4 + words as usize * 4, 0);
            out[block_start + 2..block_start + 4].copy_from_slice(&words.to_be_bytes());
            out[0] |= 0x10;
        }
        _ => out.truncate(block_start),
    }

    out.extend_from_slice(payload_and_padding);
}

/// A padding-only packet (a bandwidth probe on an RTX stream).
#[derive(Clone, Copy, Debug)]
pub struct Padding<'a> {
    pub ssrc: u32,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    /// The transport-wide sequence number (extension id, value).
    pub twcc: (u8, u16),
    pub mid: Option<(u8, &'a [u8])>,
    /// Padding bytes (1..=255; the last one holds the count).
    pub len: usize,
}

/// Writes into `out` (cleared first) a packet of nothing but padding, with the transport-wide
/// sequence number and mid extensions in one-byte form.
pub fn build_padding(out: &mut Vec<u8>, p: &Padding) {
    out.clear();
    let len = p.len.clamp(1, 255);
    out.push(0x80 | 0x20 | 0x10);
    out.push(p.payload_type & 0x7f);
    out.extend_from_slice(&p.sequence.to_be_bytes());
    out.extend_from_slice(&p.timestamp.to_be_bytes());
    out.extend_from_slice(&p.ssrc.to_be_bytes());
    let block_start = out.len();
    out.extend_from_slice(&PROFILE_ONE_BYTE.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    let (id, seq) = p.twcc;
    out.push((id << 4) | 1);
    out.extend_from_slice(&seq.to_be_bytes());
    if let Some((id, v)) = p.mid.filter(|(id, v)| {
        (1..=ONE_BYTE_MAX_ID).contains(id) && (1..=ONE_BYTE_MAX_LEN).contains(&v.len())
    }) {
        out.push((id << 4) | (v.len() - 1) as u8);
        out.extend_from_slice(v);
    }
    let words = (out.len() - block_start - 4).div_ceil(4);
    out.resize(block_start + 4 + words * 4, 0);
    out[block_start + 2..block_start + 4].copy_from_slice(&(words as u16).to_be_bytes());
    out.resize(out.len() + len, 0);
    let last = out.len() - 1;
    out[last] = len as u8;
}

/// Overwrites the sequence number in place (no-op on a buffer too short to be RTP).
pub fn set_sequence(buf: &mut [u8], seq: u16) {
    if let Some(b) = buf.get_mut(2..4) {
        b.copy_from_slice(&seq.to_be_bytes());
    }
}

/// Overwrites the timestamp in place.
pub fn set_timestamp(buf: &mut [u8], ts: u32) {
    if let Some(b) = buf.get_mut(4..8) {
        b.copy_from_slice(&ts.to_be_bytes());
    }
}

/// Overwrites the SSRC in place.
pub fn set_ssrc(buf: &mut [u8], ssrc: u32) {
    if let Some(b) = buf.get_mut(8..12) {
        b.copy_from_slice(&ssrc.to_be_bytes());
    }
}

/// Overwrites the payload type in place, keeping the marker bit.
pub fn set_payload_type(buf: &mut [u8], pt: u8) {
    if let Some(b) = buf.get_mut(1) {
        *b = (*b & 0x80) | (pt & 0x7f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webrtc_util::Unmarshal;

    /// V=2 P=1 X=1 CC=1, M=1 PT=96, seq 0x1234, ts 0xdeadbeef, ssrc 0x11223344, csrc 0xaabbccdd,
    /// one-byte extensions: id 1 (mid "a"), id 4 (abs-send-time, 3 bytes), id 5 (twcc, 2 bytes),
    /// payload [1,2,3,4], 4 bytes of padding.
    const PACKET: &[u8] = &[
        0xb1, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x11, 0x22, 0x33,
        0x44, // fixed header
        0xaa, 0xbb, 0xcc, 0xdd, // csrc
        0xbe, 0xde, 0x00, 0x03, // one-byte profile, 3 words
        0x10, b'a', // id 1 len 1
        0x42, 0x01, 0x02, 0x03, // id 4 len 3
        0x51, 0x00, 0x07, // id 5 len 2
        0x00, 0x00, 0x00, // padding
        0x01, 0x02, 0x03, 0x04, // payload
        0x00, 0x00, 0x00, 0x04, // padding
    ];

    #[test]
    fn audio_level_reads_the_level_and_the_voice_bit_of_its_element() {
        let h = parse_rtp(PACKET).unwrap();
        // id 1 carries b'a' (0x61): V=0, level 97.
        assert_eq!(audio_level(PACKET, &h, 1), Some((0x61, false)));
        assert_eq!(audio_level(PACKET, &h, 9), None, "no such element");
        let mut p = PACKET.to_vec();
        p[21] = 0x80 | 12;
        let h = parse_rtp(&p).unwrap();
        assert_eq!(audio_level(&p, &h, 1), Some((12, true)));
    }

    #[test]
    fn packet_with_csrc_extensions_and_padding_is_parsed() {
        let h = parse_rtp(PACKET).unwrap();
        assert!(h.marker);
        assert_eq!(h.payload_type, 96);
        assert_eq!(h.sequence, 0x1234);
        assert_eq!(h.timestamp, 0xdeadbeef);
        assert_eq!(h.ssrc, 0x11223344);
        assert_eq!(h.csrc_count, 1);
        assert_eq!(h.ext_profile, 0xbede);
        assert_eq!((h.ext_start, h.ext_len), (20, 12));
        assert_eq!(h.padding_len, 4);
        assert_eq!(h.payload(PACKET), &[1, 2, 3, 4]);
        let exts: Vec<_> = extensions(PACKET, &h).collect();
        assert_eq!(
            exts,
            vec![(1, &b"a"[..]), (4, &[1, 2, 3][..]), (5, &[0, 7][..])]
        );
        assert_eq!(find_extension(PACKET, &h, 4), Some(&[1, 2, 3][..]));
        assert_eq!(find_extension(PACKET, &h, 2), None);
    }

    #[test]
    fn two_byte_extensions_are_iterated() {
        let pkt = [
            0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, // header, X=1
            0x10, 0x00, 0x00, 0x02, // two-byte profile, 2 words
            0x07, 0x00, // id 7, empty
            0x0c, 0x03, 9, 8, 7,    // id 12, 3 bytes
            0x00, // padding
            0xff, // payload
        ];
        let h = parse_rtp(&pkt).unwrap();
        let exts: Vec<_> = extensions(&pkt, &h).collect();
        assert_eq!(exts, vec![(7, &[][..]), (12, &[9, 8, 7][..])]);
        assert_eq!(h.payload(&pkt), &[0xff]);
    }

    #[test]
    fn truncated_or_malformed_packets_are_rejected() {
        // Every prefix that cuts the header or the extension block fails.
        for len in 0..32 {
            assert_eq!(parse_rtp(&PACKET[..len]), None, "prefix of {len} bytes");
        }
        // Longer prefixes read a payload byte as padding length: only a sane one is accepted.
        for len in 32..PACKET.len() {
            if let Some(h) = parse_rtp(&PACKET[..len]) {
                assert!(h.payload_start <= h.payload_end && h.payload_end <= len);
            }
        }
        let mut v1 = PACKET.to_vec();
        v1[0] = (v1[0] & 0x3f) | 0x40;
        assert_eq!(parse_rtp(&v1), None);
        let mut zero_pad = PACKET.to_vec();
        *zero_pad.last_mut().unwrap() = 0;
        assert_eq!(parse_rtp(&zero_pad), None);
        let mut huge_pad = PACKET.to_vec();
        *huge_pad.last_mut().unwrap() = 200;
        assert_eq!(parse_rtp(&huge_pad), None);
        let mut many_csrc = PACKET[..12].to_vec();
        many_csrc[0] = 0x8f;
        assert_eq!(parse_rtp(&many_csrc), None);
    }

    #[test]
    fn an_extension_element_running_past_the_block_is_rejected() {
        let pkt = [
            0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, // header, X=1
            0xbe, 0xde, 0x00, 0x01, // 1 word
            0x10, 0x05, 0x3f, 0x01, // id 1 len 1, then id 3 claiming 16 bytes
        ];
        assert_eq!(parse_rtp(&pkt), None);
    }

    /// The packet that destroyed a room (issue #10): 36 bytes, all header: a one-byte extension
    /// block of 5 words whose last element (id 1, at the block's last byte) claims 16 bytes
    /// that neither the block nor the packet holds. The block itself fits the packet, which is
    /// all the old check looked at; the `rtp` crate then read past the end and panicked.
    const CRASHER: [u8; 36] = [
        0x90, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x12, 0x34, 0x56, 0x78, // X=1
        0xbe, 0xde, 0x00, 0x05, // one-byte form, 5 words
        0x10, b'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    // mid "a", padding
        0x1f, // id 1, 16 bytes: past the end of the packet
    ];

    #[test]
    fn the_36_byte_packet_whose_extension_element_overruns_the_packet_is_rejected() {
        assert_eq!(parse_rtp(&CRASHER), None);
        // Same in the two-byte form, and for an id whose length byte is cut off.
        let mut two_byte = CRASHER;
        two_byte[12..14].copy_from_slice(&[0x10, 0x00]);
        two_byte[16..18].copy_from_slice(&[0x01, 0x01]);
        two_byte[34..36].copy_from_slice(&[0x01, 0x05]);
        assert_eq!(parse_rtp(&two_byte), None);
        two_byte[34..36].copy_from_slice(&[0x00, 0x07]);
        assert_eq!(parse_rtp(&two_byte), None, "id without its length byte");
        two_byte[35] = 0;
        assert!(parse_rtp(&two_byte).is_some());
        // Without the overrunning element the packet is fine.
        let mut fits = CRASHER;
        fits[35] = 0;
        let h = parse_rtp(&fits).unwrap();
        assert_eq!(find_extension(&fits, &h, 1), Some(&b"a"[..]));
        assert_eq!(h.payload(&fits).len(), 0);
    }

    #[test]
    fn webrtc_srtp_panics_on_the_36_byte_packet_which_is_why_it_never_sees_one() {
        use webrtc_srtp::protection_profile::ProtectionProfile;
        let profile = ProtectionProfile::Aes128CmHmacSha1_80;
        let decrypt = std::panic::catch_unwind(|| {
            let (key, salt) = ([7u8; 16], [9u8; 14]);
            let mut ctx =
                webrtc_srtp::context::Context::new(&key, &salt, profile, None, None).unwrap();
            let _ = ctx.decrypt_rtp(&CRASHER);
        });
        assert!(
            decrypt.is_err(),
            "the crate's header parser no longer panics on it"
        );
    }

    #[test]
    fn padding_and_the_id_15_terminator_are_accepted_inside_the_block() {
        let pkt = [
            0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, // header, X=1
            0xbe, 0xde, 0x00, 0x02, // 2 words
            0x00, 0x10, 0x07, 0x00, // padding, id 1 len 1, padding
            0xf0, 0xff, 0xff, 0xff, // id 15: stop; what follows is not elements
            0x42, // payload
        ];
        let h = parse_rtp(&pkt).unwrap();
        let exts: Vec<_> = extensions(&pkt, &h).collect();
        assert_eq!(exts, vec![(1, &[7][..])]);
        assert_eq!(h.payload(&pkt), &[0x42]);
        // Unknown profiles are opaque: accepted, no elements.
        let mut other = pkt;
        other[12..14].copy_from_slice(&[0x12, 0x34]);
        let h = parse_rtp(&other).unwrap();
        assert_eq!(extensions(&other, &h).count(), 0);
    }

    #[test]
    fn padding_longer_than_the_payload_is_rejected() {
        // 12-byte header, 2 payload bytes, padding length claims 4 (only 3 bytes after the header).
        let mut pkt = vec![0xa0, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xaa, 0xbb, 0x04];
        assert_eq!(parse_rtp(&pkt), None);
        pkt[14] = 3;
        let h = parse_rtp(&pkt).unwrap();
        assert_eq!(h.payload(&pkt), &[] as &[u8]);
        assert_eq!(h.padding_len, 3);
    }

    #[test]
    fn the_extension_iterator_stays_inside_the_block_for_any_header() {
        let pkt = [
            0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0, 1, 0x3f, 1, 2, 3,
        ];
        let mut h = parse_rtp(&[0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2]).unwrap();
        h.ext_profile = PROFILE_ONE_BYTE;
        for (start, len) in [(16, 4), (16, 400), (usize::MAX, 2), (10, usize::MAX)] {
            h.ext_start = start;
            h.ext_len = len;
            for (_, v) in extensions(&pkt, &h) {
                assert!(v.len() <= pkt.len());
            }
        }
    }

    /// Every accepted packet is safe for every reader; random packets with extension blocks.
    #[test]
    fn random_packets_that_parse_are_safe_for_every_reader() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let map = consumer_map();
        let mut out = Vec::new();
        let mut accepted = 0;
        for _ in 0..50_000 {
            let len = 12 + (next() % 60) as usize;
            let mut pkt: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            pkt[0] = 0x80 | (pkt[0] & 0x3f & !0x0c);
            if next() % 2 == 0 && len >= 16 {
                pkt[0] |= 0x10;
                pkt[12..14].copy_from_slice(if next() % 2 == 0 {
                    &[0xbe, 0xde]
                } else {
                    &[0x10, 0x00]
                });
                pkt[14] = 0;
                pkt[15] = (next() % 4) as u8;
            }
            let Some(h) = parse_rtp(&pkt) else { continue };
            accepted += 1;
            for (_, v) in extensions(&pkt, &h) {
                assert!(v.len() <= 255);
            }
            let _ = crate::rtc::keyframe::is_keyframe(
                crate::rtc::keyframe::VideoCodec::H264,
                h.payload(&pkt),
            );
            let rw = Rewrite {
                ssrc: 1,
                payload_type: 96,
                sequence: 2,
                timestamp: 3,
                ext_map: &map,
                mid: Some((1, b"7")),
                twcc: None,
            };
            rewrite_into(&pkt, &h, &rw, &mut out);
            let back = parse_rtp(&out).expect("a rewritten packet parses");
            assert_eq!(back.payload(&out), h.payload(&pkt));
        }
        assert!(accepted > 1000, "{accepted}");
    }

    fn consumer_map() -> ExtIdMap {
        let mut map = ExtIdMap::new();
        map.set(1, 0); // incoming mid: replaced by the consumer's
        map.set(4, 3); // abs-send-time moves to id 3
                       // id 5 (transport-cc) is not negotiated with this consumer: dropped.
        map
    }

    #[test]
    fn rewrite_produces_the_expected_bytes() {
        let h = parse_rtp(PACKET).unwrap();
        let map = consumer_map();
        let rw = Rewrite {
            ssrc: 0x55667788,
            payload_type: 101,
            sequence: 7,
            timestamp: 1000,
            ext_map: &map,
            mid: Some((1, b"42")),
            twcc: None,
        };
        let mut out = Vec::new();
        rewrite_into(PACKET, &h, &rw, &mut out);
        let expected: &[u8] = &[
            0xb1, 0xe5, 0x00, 0x07, 0x00, 0x00, 0x03, 0xe8, 0x55, 0x66, 0x77, 0x88, // header
            0xaa, 0xbb, 0xcc, 0xdd, // csrc
            0xbe, 0xde, 0x00, 0x02, // 2 words
            0x32, 0x01, 0x02, 0x03, // id 3 len 3 (abs-send-time)
            0x11, b'4', b'2', 0x00, // id 1 len 2 (mid), padding
            0x01, 0x02, 0x03, 0x04, // payload
            0x00, 0x00, 0x00, 0x04, // padding
        ];
        assert_eq!(out, expected);

        let pkt = rtp::packet::Packet::unmarshal(&mut &out[..]).unwrap();
        assert_eq!(pkt.header.ssrc, 0x55667788);
        assert_eq!(pkt.header.payload_type, 101);
        assert_eq!(pkt.header.sequence_number, 7);
        assert_eq!(pkt.header.timestamp, 1000);
        assert_eq!(pkt.header.csrc, vec![0xaabbccdd]);
        assert_eq!(pkt.header.get_extension(1).unwrap(), &b"42"[..]);
        assert_eq!(pkt.header.get_extension(3).unwrap(), &[1, 2, 3][..]);
        assert!(pkt.header.get_extension(5).is_none());
        assert_eq!(&pkt.payload[..], &[1, 2, 3, 4]);
    }

    #[test]
    fn rewrite_without_kept_extensions_omits_the_block() {
        let h = parse_rtp(PACKET).unwrap();
        let map = ExtIdMap::new();
        let rw = Rewrite {
            ssrc: 1,
            payload_type: 96,
            sequence: 2,
            timestamp: 3,
            ext_map: &map,
            mid: None,
            twcc: None,
        };
        let mut out = vec![0xee; 100]; // stale content must be cleared
        rewrite_into(PACKET, &h, &rw, &mut out);
        assert_eq!(out[0], 0xa1, "no X bit, P bit and CC kept");
        assert_eq!(out.len(), 12 + 4 + 4 + 4);
        let back = parse_rtp(&out).unwrap();
        assert_eq!(back.ext_profile, 0);
        assert_eq!(back.payload(&out), &[1, 2, 3, 4]);
    }

    #[test]
    fn long_extension_is_written_in_two_byte_form() {
        let h = parse_rtp(PACKET).unwrap();
        let map = consumer_map();
        let long_mid = [b'm'; 20];
        let rw = Rewrite {
            ssrc: 1,
            payload_type: 96,
            sequence: 2,
            timestamp: 3,
            ext_map: &map,
            mid: Some((1, &long_mid)),
            twcc: None,
        };
        let mut out = Vec::new();
        rewrite_into(PACKET, &h, &rw, &mut out);
        let back = parse_rtp(&out).unwrap();
        assert_eq!(back.ext_profile, 0x1000);
        let exts: Vec<_> = extensions(&out, &back).collect();
        assert_eq!(exts, vec![(3, &[1, 2, 3][..]), (1, &long_mid[..])]);
        let pkt = rtp::packet::Packet::unmarshal(&mut &out[..]).unwrap();
        assert_eq!(pkt.header.get_extension(1).unwrap(), &long_mid[..]);
    }

    #[test]
    fn extension_block_that_would_outgrow_its_length_field_is_dropped() {
        // 65535 words of one-byte elements (id 2, 1 byte each), mapped and forced to two-byte
        // form by a long mid: 3 bytes per element no longer fit in a 16-bit word count.
        let mut pkt = vec![
            0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0xff, 0xff,
        ];
        for _ in 0..65535 * 2 {
            pkt.extend_from_slice(&[0x20, 0x07]);
        }
        pkt.push(0xaa);
        let h = parse_rtp(&pkt).unwrap();
        let mut map = ExtIdMap::new();
        map.set(2, 2);
        let rw = Rewrite {
            ssrc: 1,
            payload_type: 96,
            sequence: 2,
            timestamp: 3,
            ext_map: &map,
            mid: Some((1, &[b'm'; 20])),
            twcc: None,
        };
        let mut out = Vec::new();
        rewrite_into(&pkt, &h, &rw, &mut out);
        let back = parse_rtp(&out).unwrap();
        assert_eq!(back.ext_profile, 0);
        assert_eq!(back.payload(&out), &[0xaa]);
    }

    #[test]
    fn in_place_setters_edit_the_header_fields() {
        let mut pkt = PACKET.to_vec();
        set_sequence(&mut pkt, 0xabcd);
        set_timestamp(&mut pkt, 5);
        set_ssrc(&mut pkt, 6);
        set_payload_type(&mut pkt, 111);
        let h = parse_rtp(&pkt).unwrap();
        assert_eq!((h.sequence, h.timestamp, h.ssrc), (0xabcd, 5, 6));
        assert_eq!(h.payload_type, 111);
        assert!(h.marker);
        let mut short = [0u8; 3];
        set_ssrc(&mut short, 1);
        set_timestamp(&mut short, 1);
        assert_eq!(short, [0; 3]);
    }

    #[test]
    fn rewritten_packets_carry_the_transport_sequence_number_and_padding_parses() {
        let mut map = ExtIdMap::new();
        map.set(3, 0); // the publisher's transport-wide sequence number is dropped
        let src = [
            0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0xBE, 0xDE, 0, 1, 0x31, 0xAA, 0xBB, 0, 7, 7,
        ];
        let h = parse_rtp(&src).unwrap();
        let rw = Rewrite {
            ssrc: 5,
            payload_type: 100,
            sequence: 2,
            timestamp: 3,
            ext_map: &map,
            mid: Some((1, b"0")),
            twcc: Some((5, 0x1234)),
        };
        let mut out = Vec::new();
        rewrite_into(&src, &h, &rw, &mut out);
        let h2 = parse_rtp(&out).unwrap();
        assert_eq!(find_extension(&out, &h2, 5), Some(&[0x12, 0x34][..]));
        assert_eq!(find_extension(&out, &h2, 3), None);
        assert_eq!(h2.payload(&out), &[7, 7]);

        build_padding(
            &mut out,
            &Padding {
                ssrc: 6,
                payload_type: 101,
                sequence: 9,
                timestamp: 3,
                twcc: (5, 0x0102),
                mid: Some((1, b"0")),
                len: 240,
            },
        );
        let p = parse_rtp(&out).unwrap();
        assert_eq!(p.ssrc, 6);
        assert_eq!(p.padding_len, 240);
        assert!(p.payload(&out).is_empty());
        assert_eq!(find_extension(&out, &p, 5), Some(&[1, 2][..]));
        assert_eq!(find_extension(&out, &p, 1), Some(&b"0"[..]));
    }
}
