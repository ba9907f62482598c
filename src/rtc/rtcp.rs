//! RTCP (RFC 3550, 4585, 5104, draft REMB, transport-cc): compound parsing into events, and
//! builders that append the packets the SFU sends to a caller-owned buffer. The `rtcp` crate
//! is used in tests to cross-check the wire format.

use std::time::{SystemTime, UNIX_EPOCH};

const PT_SR: u8 = 200;
const PT_RR: u8 = 201;
const PT_RTPFB: u8 = 205;
const PT_PSFB: u8 = 206;
const FMT_NACK: u8 = 1;
const FMT_PLI: u8 = 1;
const FMT_FIR: u8 = 4;
const FMT_REMB: u8 = 15;
const FMT_TRANSPORT_CC: u8 = 15;
/// Report blocks one SR/RR can hold (5-bit count).
const MAX_REPORTS_PER_PACKET: usize = 31;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtcpError {
    #[error("malformed RTCP compound packet: {0}")]
    Framing(&'static str),
    #[error("malformed RTCP packet: {0}")]
    Packet(String),
}

/// One report block of an SR or RR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceptionReport {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (24 bits on the wire).
    pub total_lost: u32,
    pub highest_sequence: u32,
    pub jitter: u32,
    pub last_sender_report: u32,
    pub delay_since_last_sender_report: u32,
}

/// What one RTCP packet of a compound tells the SFU.
#[derive(Clone, Debug, PartialEq)]
pub enum RtcpEvent {
    SenderReport {
        ssrc: u32,
        ntp: u64,
        rtp_time: u32,
        packets: u32,
        octets: u32,
    },
    /// From an RR, or the report blocks carried by an SR (then `ssrc` is the SR's sender).
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReceptionReport>,
    },
    Pli {
        sender_ssrc: u32,
        media_ssrc: u32,
    },
    /// One per FIR entry; `media_ssrc` is the entry's SSRC.
    Fir {
        sender_ssrc: u32,
        media_ssrc: u32,
    },
    Nack {
        sender_ssrc: u32,
        media_ssrc: u32,
        lost: Vec<u16>,
    },
    Remb {
        bitrate: f32,
        ssrcs: Vec<u32>,
    },
    TransportCc {
        media_ssrc: u32,
    },
    /// SDES, BYE, XR and anything the SFU does not act on.
    Other,
}

/// Splits a compound packet into its packets; checks only the common headers.
pub fn split_compound(buf: &[u8]) -> impl Iterator<Item = Result<&[u8], RtcpError>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 4 {
            rest = &[];
            return Some(Err(RtcpError::Framing("truncated header")));
        }
        if rest[0] >> 6 != 2 {
            rest = &[];
            return Some(Err(RtcpError::Framing("version is not 2")));
        }
        let len = (u16::from_be_bytes([rest[2], rest[3]]) as usize + 1) * 4;
        if len > rest.len() {
            rest = &[];
            return Some(Err(RtcpError::Framing("length exceeds datagram")));
        }
        let (packet, tail) = rest.split_at(len);
        rest = tail;
        Some(Ok(packet))
    })
}

/// Appends to `out` the events of every packet in the compound `buf`.
///
/// A framing error (truncated packet, bad version or length) returns `Err` with nothing appended.
/// A packet whose body is malformed is skipped; the events of its well-formed neighbours are
/// still appended and the first such error is returned.
pub fn parse_compound(buf: &[u8], out: &mut Vec<RtcpEvent>) -> Result<(), RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::Framing("empty"));
    }
    for packet in split_compound(buf) {
        packet?;
    }
    let mut first_error = None;
    for packet in split_compound(buf).flatten() {
        if let Err(e) = parse_packet(packet, out) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn malformed(what: &str) -> RtcpError {
    RtcpError::Packet(what.to_owned())
}

/// Parses one framed packet. Done by hand rather than with the `rtcp` crate: its parsers read
/// past the end of short packets and panic (e.g. a REMB whose SSRC count exceeds its length).
fn parse_packet(packet: &[u8], out: &mut Vec<RtcpEvent>) -> Result<(), RtcpError> {
    let fmt = packet[0] & 0x1f;
    let count = fmt as usize;
    let mut body = &packet[4..];
    if packet[0] & 0x20 != 0 {
        let pad = *body
            .last()
            .ok_or_else(|| malformed("padding in empty packet"))? as usize;
        if pad == 0 || pad > body.len() {
            return Err(malformed("bad padding"));
        }
        body = &body[..body.len() - pad];
    }
    match (packet[1], fmt) {
        (PT_SR, _) => {
            if body.len() < 24 + 24 * count {
                return Err(malformed("short sender report"));
            }
            let ssrc = be32(body, 0);
            out.push(RtcpEvent::SenderReport {
                ssrc,
                ntp: (be32(body, 4) as u64) << 32 | be32(body, 8) as u64,
                rtp_time: be32(body, 12),
                packets: be32(body, 16),
                octets: be32(body, 20),
            });
            if count > 0 {
                out.push(RtcpEvent::ReceiverReport {
                    ssrc,
                    reports: report_blocks(&body[24..24 + 24 * count]),
                });
            }
        }
        (PT_RR, _) => {
            if body.len() < 4 + 24 * count {
                return Err(malformed("short receiver report"));
            }
            out.push(RtcpEvent::ReceiverReport {
                ssrc: be32(body, 0),
                reports: report_blocks(&body[4..4 + 24 * count]),
            });
        }
        (PT_RTPFB | PT_PSFB, _) if body.len() < 8 => return Err(malformed("short feedback")),
        (PT_RTPFB, FMT_NACK) => {
            let mut lost = Vec::new();
            for pair in body[8..].chunks_exact(4) {
                let pid = u16::from_be_bytes([pair[0], pair[1]]);
                let blp = u16::from_be_bytes([pair[2], pair[3]]);
                lost.push(pid);
                lost.extend(
                    (0..16)
                        .filter(|bit| blp & (1 << bit) != 0)
                        .map(|bit| pid.wrapping_add(bit + 1)),
                );
            }
            out.push(RtcpEvent::Nack {
                sender_ssrc: be32(body, 0),
                media_ssrc: be32(body, 4),
                lost,
            });
        }
        (PT_RTPFB, FMT_TRANSPORT_CC) => out.push(RtcpEvent::TransportCc {
            media_ssrc: be32(body, 4),
        }),
        (PT_PSFB, FMT_PLI) => out.push(RtcpEvent::Pli {
            sender_ssrc: be32(body, 0),
            media_ssrc: be32(body, 4),
        }),
        (PT_PSFB, FMT_FIR) => {
            let sender_ssrc = be32(body, 0);
            out.extend(body[8..].chunks_exact(8).map(|entry| RtcpEvent::Fir {
                sender_ssrc,
                media_ssrc: be32(entry, 0),
            }));
        }
        (PT_PSFB, FMT_REMB) if body.get(8..12) == Some(b"REMB") => {
            let word = body.get(12..16).ok_or_else(|| malformed("short REMB"))?;
            let num_ssrcs = word[0] as usize;
            let exp = word[1] >> 2;
            let mantissa = u32::from_be_bytes([0, word[1] & 3, word[2], word[3]]);
            let ssrcs = body
                .get(16..16 + 4 * num_ssrcs)
                .ok_or_else(|| malformed("REMB SSRC count exceeds its length"))?;
            out.push(RtcpEvent::Remb {
                bitrate: mantissa as f32 * 2f32.powi(exp as i32),
                ssrcs: ssrcs.chunks_exact(4).map(|s| be32(s, 0)).collect(),
            });
        }
        _ => out.push(RtcpEvent::Other),
    }
    Ok(())
}

fn report_blocks(blocks: &[u8]) -> Vec<ReceptionReport> {
    blocks
        .chunks_exact(24)
        .map(|b| ReceptionReport {
            ssrc: be32(b, 0),
            fraction_lost: b[4],
            total_lost: be32(b, 4) & 0x00ff_ffff,
            highest_sequence: be32(b, 8),
            jitter: be32(b, 12),
            last_sender_report: be32(b, 16),
            delay_since_last_sender_report: be32(b, 20),
        })
        .collect()
}

/// Writes a common header with a placeholder length; returns where the packet starts.
fn begin_packet(out: &mut Vec<u8>, count_or_fmt: u8, packet_type: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0x80 | (count_or_fmt & 0x1f), packet_type, 0, 0]);
    start
}

/// Fills in the length (in 32-bit words minus one) of the packet started at `start`.
fn end_packet(out: &mut [u8], start: usize) {
    let words = (out.len() - start) / 4 - 1;
    out[start + 2..start + 4].copy_from_slice(&(words as u16).to_be_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Picture Loss Indication (RFC 4585 §6.3.1).
pub fn build_pli(sender_ssrc: u32, media_ssrc: u32, out: &mut Vec<u8>) {
    let start = begin_packet(out, FMT_PLI, PT_PSFB);
    put32(out, sender_ssrc);
    put32(out, media_ssrc);
    end_packet(out, start);
}

/// Full Intra Request with one entry (RFC 5104 §4.3.1); `seq_nr` must grow per new request.
pub fn build_fir(sender_ssrc: u32, media_ssrc: u32, seq_nr: u8, out: &mut Vec<u8>) {
    let start = begin_packet(out, FMT_FIR, PT_PSFB);
    put32(out, sender_ssrc);
    put32(out, 0); // The header's media source SSRC is unused for FIR.
    put32(out, media_ssrc);
    out.extend_from_slice(&[seq_nr, 0, 0, 0]);
    end_packet(out, start);
}

/// Sender Report without report blocks.
pub fn build_sender_report(
    ssrc: u32,
    ntp: u64,
    rtp_time: u32,
    packets: u32,
    octets: u32,
    out: &mut Vec<u8>,
) {
    let start = begin_packet(out, 0, PT_SR);
    put32(out, ssrc);
    out.extend_from_slice(&ntp.to_be_bytes());
    put32(out, rtp_time);
    put32(out, packets);
    put32(out, octets);
    end_packet(out, start);
}

/// Receiver Report(s): one RR per 31 report blocks; one empty RR when `reports` is empty.
pub fn build_receiver_report(sender_ssrc: u32, reports: &[ReceptionReport], out: &mut Vec<u8>) {
    let mut chunks = reports.chunks(MAX_REPORTS_PER_PACKET);
    let first = chunks.next().unwrap_or(&[]);
    for chunk in std::iter::once(first).chain(chunks) {
        let start = begin_packet(out, chunk.len() as u8, PT_RR);
        put32(out, sender_ssrc);
        for r in chunk {
            put32(out, r.ssrc);
            let lost = r.total_lost.min(0x00ff_ffff);
            put32(out, (r.fraction_lost as u32) << 24 | lost);
            put32(out, r.highest_sequence);
            put32(out, r.jitter);
            put32(out, r.last_sender_report);
            put32(out, r.delay_since_last_sender_report);
        }
        end_packet(out, start);
    }
}

/// Receiver Estimated Maximum Bitrate (draft-alvestrand-rmcat-remb); at most 255 SSRCs.
pub fn build_remb(sender_ssrc: u32, bitrate_bps: u64, ssrcs: &[u32], out: &mut Vec<u8>) {
    let ssrcs = &ssrcs[..ssrcs.len().min(255)];
    // 6-bit exponent, 18-bit mantissa: the largest representable value saturates.
    let mut exp = 0u32;
    let mut mantissa = bitrate_bps;
    while mantissa >= 1 << 18 && exp < 63 {
        mantissa >>= 1;
        exp += 1;
    }
    let mantissa = mantissa.min((1 << 18) - 1) as u32;

    let start = begin_packet(out, FMT_REMB, PT_PSFB);
    put32(out, sender_ssrc);
    put32(out, 0);
    out.extend_from_slice(b"REMB");
    put32(out, (ssrcs.len() as u32) << 24 | exp << 18 | mantissa);
    for &ssrc in ssrcs {
        put32(out, ssrc);
    }
    end_packet(out, start);
}

/// Generic NACK (RFC 4585 §6.2.1); `lost` in sending order. Writes nothing when it is empty.
pub fn build_nack(sender_ssrc: u32, media_ssrc: u32, lost: &[u16], out: &mut Vec<u8>) {
    let Some((&first, rest)) = lost.split_first() else {
        return;
    };
    let start = begin_packet(out, FMT_NACK, PT_RTPFB);
    put32(out, sender_ssrc);
    put32(out, media_ssrc);
    let (mut pid, mut blp) = (first, 0u16);
    for &seq in rest {
        match seq.wrapping_sub(pid) {
            0 => {}
            d @ 1..=16 => blp |= 1 << (d - 1),
            _ => {
                out.extend_from_slice(&pid.to_be_bytes());
                out.extend_from_slice(&blp.to_be_bytes());
                (pid, blp) = (seq, 0);
            }
        }
    }
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(&blp.to_be_bytes());
    end_packet(out, start);
}

/// The current wall-clock time as a 64-bit NTP timestamp (32.32 fixed point since 1900).
pub fn ntp_now() -> u64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_unix.as_secs() + NTP_UNIX_OFFSET_SECS;
    let frac = ((since_unix.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Vec<RtcpEvent> {
        let mut events = Vec::new();
        parse_compound(buf, &mut events).unwrap();
        events
    }

    #[test]
    fn pli_round_trips() {
        let mut out = Vec::new();
        build_pli(1, 2, &mut out);
        assert_eq!(out, [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(
            parse(&out),
            vec![RtcpEvent::Pli {
                sender_ssrc: 1,
                media_ssrc: 2
            }]
        );
    }

    #[test]
    fn fir_round_trips_with_the_entry_ssrc_as_media_ssrc() {
        let mut out = Vec::new();
        build_fir(1, 0xabcd, 9, &mut out);
        assert_eq!(out.len(), 20);
        assert_eq!(
            parse(&out),
            vec![RtcpEvent::Fir {
                sender_ssrc: 1,
                media_ssrc: 0xabcd
            }]
        );
    }

    #[test]
    fn sender_report_round_trips() {
        let mut out = Vec::new();
        let ntp = 0xe8a1_b2c3_1234_5678;
        build_sender_report(7, ntp, 90_000, 100, 120_000, &mut out);
        assert_eq!(out.len(), 28);
        assert_eq!(
            parse(&out),
            vec![RtcpEvent::SenderReport {
                ssrc: 7,
                ntp,
                rtp_time: 90_000,
                packets: 100,
                octets: 120_000
            }]
        );
    }

    #[test]
    fn receiver_report_round_trips_and_splits_after_31_blocks() {
        let report = ReceptionReport {
            ssrc: 5,
            fraction_lost: 12,
            total_lost: 345,
            highest_sequence: 0x1_0010,
            jitter: 40,
            last_sender_report: 0x1234_5678,
            delay_since_last_sender_report: 6553,
        };
        let mut out = Vec::new();
        build_receiver_report(9, &[report], &mut out);
        assert_eq!(
            parse(&out),
            vec![RtcpEvent::ReceiverReport {
                ssrc: 9,
                reports: vec![report]
            }]
        );

        let many = vec![report; 40];
        out.clear();
        build_receiver_report(9, &many, &mut out);
        let events = parse(&out);
        let counts: Vec<usize> = events
            .iter()
            .map(|e| match e {
                RtcpEvent::ReceiverReport { reports, .. } => reports.len(),
                _ => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(counts, vec![31, 9]);

        out.clear();
        build_receiver_report(9, &[], &mut out);
        assert_eq!(out, [0x80, 201, 0, 1, 0, 0, 0, 9]);
    }

    #[test]
    fn remb_round_trips() {
        let mut out = Vec::new();
        build_remb(3, 2_500_000, &[10, 11], &mut out);
        match &parse(&out)[..] {
            [RtcpEvent::Remb { bitrate, ssrcs }] => {
                assert!((bitrate - 2_500_000.0).abs() < 16.0, "{bitrate}");
                assert_eq!(ssrcs, &[10, 11]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nack_round_trips_across_pairs_and_wraparound() {
        let lost = [65530, 65531, 65535, 0, 3, 100, 116, 117];
        let mut out = Vec::new();
        build_nack(1, 2, &lost, &mut out);
        assert_eq!(
            parse(&out),
            vec![RtcpEvent::Nack {
                sender_ssrc: 1,
                media_ssrc: 2,
                lost: lost.to_vec()
            }]
        );
        out.clear();
        build_nack(1, 2, &[], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn builders_append_to_a_compound() {
        let mut out = Vec::new();
        build_sender_report(1, 2, 3, 4, 5, &mut out);
        build_pli(1, 6, &mut out);
        assert_eq!(parse(&out).len(), 2);
    }

    /// As Chromium sends it: SR (with one report block), SDES (CNAME), PLI.
    const SR_SDES_PLI: &[u8] = &[
        0x81, 0xc8, 0x00, 0x0c, // SR, RC=1, len 12
        0x00, 0x00, 0x04, 0xd2, // ssrc 1234
        0xe8, 0x00, 0x00, 0x01, 0x80, 0x00, 0x00, 0x00, // ntp
        0x00, 0x01, 0x5f, 0x90, // rtp time 90000
        0x00, 0x00, 0x00, 0x64, // packets 100
        0x00, 0x01, 0xd4, 0xc0, // octets 120000
        0x00, 0x00, 0x16, 0x2e, // report block: ssrc 5678
        0x01, 0x00, 0x00, 0x02, // fraction 1, lost 2
        0x00, 0x00, 0x10, 0x00, // highest seq
        0x00, 0x00, 0x00, 0x05, // jitter
        0x00, 0x00, 0x00, 0x00, // lsr
        0x00, 0x00, 0x00, 0x00, // dlsr
        0x81, 0xca, 0x00, 0x03, // SDES, 1 chunk, len 3
        0x00, 0x00, 0x04, 0xd2, // ssrc 1234
        0x01, 0x03, b'a', b'b', // CNAME "abc"
        b'c', 0x00, 0x00, 0x00, // end + padding
        0x81, 0xce, 0x00, 0x02, // PLI
        0x00, 0x00, 0x04, 0xd2, // sender 1234
        0x00, 0x00, 0x16, 0x2e, // media 5678
    ];

    #[test]
    fn compound_sr_sdes_pli_is_parsed_into_events() {
        let events = parse(SR_SDES_PLI);
        assert_eq!(
            events,
            vec![
                RtcpEvent::SenderReport {
                    ssrc: 1234,
                    ntp: 0xe800_0001_8000_0000,
                    rtp_time: 90_000,
                    packets: 100,
                    octets: 120_000
                },
                RtcpEvent::ReceiverReport {
                    ssrc: 1234,
                    reports: vec![ReceptionReport {
                        ssrc: 5678,
                        fraction_lost: 1,
                        total_lost: 2,
                        highest_sequence: 0x1000,
                        jitter: 5,
                        last_sender_report: 0,
                        delay_since_last_sender_report: 0
                    }]
                },
                RtcpEvent::Other,
                RtcpEvent::Pli {
                    sender_ssrc: 1234,
                    media_ssrc: 5678
                },
            ]
        );
    }

    #[test]
    fn truncated_or_garbage_input_returns_err() {
        let mut events = Vec::new();
        assert!(parse_compound(&[], &mut events).is_err());
        for len in 1..SR_SDES_PLI.len() {
            let cut = &SR_SDES_PLI[..len];
            let at_boundary = [52, 68].contains(&len);
            assert_eq!(
                parse_compound(cut, &mut events).is_ok(),
                at_boundary,
                "{len}"
            );
        }
        let garbage: Vec<u8> = (0..300u32).map(|i| (i * 89 % 253) as u8).collect();
        assert!(parse_compound(&garbage, &mut Vec::new()).is_err());
    }

    #[test]
    fn remb_claiming_more_ssrcs_than_it_holds_is_rejected() {
        let mut remb = Vec::new();
        build_remb(1, 1000, &[2], &mut remb);
        remb[16] = 9;
        let mut events = Vec::new();
        assert!(parse_compound(&remb, &mut events).is_err());
        assert!(events.is_empty());
    }

    #[test]
    fn mutated_packets_never_panic() {
        let mut seeds = vec![SR_SDES_PLI.to_vec()];
        let mut out = Vec::new();
        build_nack(1, 2, &[1, 5, 40], &mut out);
        build_remb(1, 1_000_000, &[3], &mut out);
        build_fir(1, 2, 3, &mut out);
        seeds.push(out);
        // transport-cc feedback as Chromium sends it.
        seeds.push(vec![
            0x8f, 0xcd, 0x00, 0x05, 0xfa, 0x17, 0xfa, 0x17, 0x43, 0x3, 0x2f, 0xa0, 0x0, 0x99, 0x0,
            0x1, 0x3d, 0xe8, 0x2, 0x17, 0x20, 0x1, 0x94, 0x1,
        ]);
        let mut next = crate::test_util::xorshift(0x1234_5678);
        for seed in &seeds {
            for _ in 0..3000 {
                let mut pkt = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let i = next() as usize % pkt.len();
                    pkt[i] = next() as u8;
                }
                let _ = parse_compound(&pkt, &mut Vec::new());
            }
        }
    }

    #[test]
    fn builders_are_understood_by_the_rtcp_crate() {
        use rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
        use rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
        use rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
        use rtcp::receiver_report::ReceiverReport;
        use rtcp::sender_report::SenderReport;
        use rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;

        let mut out = Vec::new();
        build_sender_report(1, 0x1122_3344_5566_7788, 3, 4, 5, &mut out);
        build_receiver_report(
            1,
            &[ReceptionReport {
                ssrc: 2,
                total_lost: 7,
                ..Default::default()
            }],
            &mut out,
        );
        build_pli(1, 2, &mut out);
        build_fir(1, 2, 3, &mut out);
        build_remb(1, 300_000, &[2], &mut out);
        build_nack(1, 2, &[10, 12, 40], &mut out);
        let packets = rtcp::packet::unmarshal(&mut &out[..]).unwrap();
        assert_eq!(packets.len(), 6);
        let sr = packets[0].as_any().downcast_ref::<SenderReport>().unwrap();
        assert_eq!(
            (sr.ssrc, sr.ntp_time, sr.octet_count),
            (1, 0x1122_3344_5566_7788, 5)
        );
        let rr = packets[1]
            .as_any()
            .downcast_ref::<ReceiverReport>()
            .unwrap();
        assert_eq!((rr.reports[0].ssrc, rr.reports[0].total_lost), (2, 7));
        let pli = packets[2]
            .as_any()
            .downcast_ref::<PictureLossIndication>()
            .unwrap();
        assert_eq!(pli.media_ssrc, 2);
        let fir = packets[3]
            .as_any()
            .downcast_ref::<FullIntraRequest>()
            .unwrap();
        assert_eq!((fir.fir[0].ssrc, fir.fir[0].sequence_number), (2, 3));
        let remb = packets[4]
            .as_any()
            .downcast_ref::<ReceiverEstimatedMaximumBitrate>()
            .unwrap();
        assert_eq!((remb.bitrate, &remb.ssrcs[..]), (300_000.0, &[2][..]));
        let nack = packets[5]
            .as_any()
            .downcast_ref::<TransportLayerNack>()
            .unwrap();
        let lost: Vec<u16> = nack.nacks.iter().flat_map(|p| p.packet_list()).collect();
        assert_eq!(lost, vec![10, 12, 40]);
    }

    #[test]
    fn ntp_now_is_after_2020() {
        let secs_2020 = 1_577_836_800 + NTP_UNIX_OFFSET_SECS;
        assert!(ntp_now() >> 32 > secs_2020);
    }
}
