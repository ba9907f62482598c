//! RFC 4571 framing for ICE-TCP: every STUN/DTLS/RTP packet on a TCP stream is preceded by its
//! length as two big-endian bytes.
//!
//! [`FrameDecoder`] is fed whatever the socket returned and hands out whole frames. A TCP peer
//! decides how it splits its bytes, so the decoder must never trust it: frames longer than
//! `max_frame` are an error (the caller closes the connection), and at most one partial frame
//! (≤ `max_frame` + 2 bytes) is ever buffered, in one buffer allocated up front. Frames that
//! arrive whole inside one read are handed out as slices of that read, without a copy.

/// Length prefix size.
pub const HEADER_LEN: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The peer announced a frame larger than we accept; the stream cannot be resynchronised.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
}

/// A streaming decoder of two-byte-length-prefixed frames.
pub struct FrameDecoder {
    max_frame: usize,
    /// A partial header or frame carried over from an earlier read (header included).
    pending: Vec<u8>,
    failed: Option<FramingError>,
}

impl FrameDecoder {
    /// `max_frame` is capped at 65535, the largest length the prefix can express.
    pub fn new(max_frame: usize) -> Self {
        let max_frame = max_frame.min(usize::from(u16::MAX));
        Self {
            max_frame,
            pending: Vec::with_capacity(max_frame + HEADER_LEN),
            failed: None,
        }
    }

    /// Bytes held back for an incomplete frame (never more than `max_frame` + 2).
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Decodes `input`, calling `on_frame` for each complete frame in order. Empty frames are
    /// skipped (they carry nothing). After an error the decoder stays failed.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        mut on_frame: impl FnMut(&[u8]),
    ) -> Result<(), FramingError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        // Finish a frame started by an earlier read.
        if !self.pending.is_empty() {
            if self.pending.len() < HEADER_LEN {
                let take = (HEADER_LEN - self.pending.len()).min(input.len());
                self.pending.extend_from_slice(&input[..take]);
                input = &input[take..];
                if self.pending.len() < HEADER_LEN {
                    return Ok(());
                }
            }
            let len = self.check_len([self.pending[0], self.pending[1]])?;
            let have = self.pending.len() - HEADER_LEN;
            let take = (len - have).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() - HEADER_LEN < len {
                return Ok(());
            }
            if len > 0 {
                on_frame(&self.pending[HEADER_LEN..]);
            }
            self.pending.clear();
        }
        // Whole frames straight from the input.
        while input.len() >= HEADER_LEN {
            let len = self.check_len([input[0], input[1]])?;
            let Some(frame) = input.get(HEADER_LEN..HEADER_LEN + len) else {
                break;
            };
            if len > 0 {
                on_frame(frame);
            }
            input = &input[HEADER_LEN + len..];
        }
        // The start of the next one; bounded by the length check above.
        self.pending.extend_from_slice(input);
        Ok(())
    }

    fn check_len(&mut self, prefix: [u8; 2]) -> Result<usize, FramingError> {
        let len = usize::from(u16::from_be_bytes(prefix));
        if len > self.max_frame {
            let e = FramingError::TooLarge {
                len,
                max: self.max_frame,
            };
            self.failed = Some(e);
            self.pending.clear();
            return Err(e);
        }
        Ok(len)
    }
}

/// Appends `frame` with its length prefix to `out`; `None` when it is too long to frame.
pub fn encode_frame(frame: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let len = u16::try_from(frame.len()).ok()?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(frame);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut FrameDecoder, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for chunk in chunks {
            decoder
                .feed(chunk, |f| frames.push(f.to_vec()))
                .expect("valid stream");
        }
        frames
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let mut stream = Vec::new();
        for frame in [&b"stun"[..], b"", b"a dtls record", &[7u8; 300]] {
            encode_frame(frame, &mut stream).unwrap();
        }
        for split in 0..stream.len() {
            for split2 in split..stream.len() {
                let mut d = FrameDecoder::new(1500);
                let frames = decode_all(
                    &mut d,
                    &[&stream[..split], &stream[split..split2], &stream[split2..]],
                );
                assert_eq!(frames.len(), 3, "split at {split}/{split2}");
                assert_eq!(frames[0], b"stun");
                assert_eq!(frames[1], b"a dtls record");
                assert_eq!(frames[2], vec![7u8; 300]);
                assert_eq!(d.buffered(), 0);
            }
        }
    }

    #[test]
    fn a_one_byte_at_a_time_stream_buffers_at_most_one_frame() {
        let mut stream = Vec::new();
        encode_frame(&[1u8; 1000], &mut stream).unwrap();
        encode_frame(&[2u8; 10], &mut stream).unwrap();
        let mut d = FrameDecoder::new(1000);
        let mut frames = Vec::new();
        for b in &stream {
            d.feed(std::slice::from_ref(b), |f| frames.push(f.len()))
                .unwrap();
            assert!(d.buffered() <= 1000 + HEADER_LEN);
        }
        assert_eq!(frames, vec![1000, 10]);
    }

    #[test]
    fn an_oversized_length_fails_and_keeps_failing_without_buffering() {
        let mut d = FrameDecoder::new(1500);
        let err = d
            .feed(&[0x05, 0xDD, 1, 2, 3], |_| panic!("no frame"))
            .unwrap_err();
        assert_eq!(
            err,
            FramingError::TooLarge {
                len: 1501,
                max: 1500
            }
        );
        assert_eq!(d.buffered(), 0);
        assert!(d.feed(&[0, 1, 9], |_| panic!("no frame")).is_err());
        // The same through the pending path: the header arrives in two reads.
        let mut d = FrameDecoder::new(100);
        d.feed(&[0xff], |_| {}).unwrap();
        assert!(d.feed(&[0xff, 0], |_| {}).is_err());
    }

    #[test]
    fn the_maximum_is_capped_at_what_two_bytes_can_say() {
        let mut d = FrameDecoder::new(usize::MAX);
        let mut frames = 0;
        let mut stream = Vec::new();
        encode_frame(&vec![0u8; 65535], &mut stream).unwrap();
        d.feed(&stream, |_| frames += 1).unwrap();
        assert_eq!(frames, 1);
        assert!(encode_frame(&vec![0u8; 65536], &mut Vec::new()).is_none());
    }
}
