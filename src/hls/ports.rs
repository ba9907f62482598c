//! Loopback UDP ports for the RTP flowing into FFmpeg.

use std::collections::HashSet;
use std::net::{Ipv4Addr, UdpSocket};

/// Picks `count` even ports from `base` upward that are in neither `taken` nor use by another
/// process; each also reserves the next (RTCP) port, which FFmpeg binds as well.
/// A probe bind proves a port free at this instant; FFmpeg binds it moments later.
pub(crate) fn allocate(base: u16, count: usize, taken: &HashSet<u16>) -> Option<Vec<u16>> {
    let free = |port: u16| UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
    let mut ports = Vec::with_capacity(count);
    let mut port = u32::from(base) + u32::from(base) % 2;
    while ports.len() < count {
        if port + 1 > u32::from(u16::MAX) {
            return None;
        }
        let (rtp, rtcp) = (port as u16, port as u16 + 1);
        if !taken.contains(&rtp) && !taken.contains(&rtcp) && free(rtp) && free(rtcp) {
            ports.push(rtp);
        }
        port += 2;
    }
    Some(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocated_ports_are_even_and_skip_taken_and_busy_ones() {
        let busy = UdpSocket::bind((Ipv4Addr::LOCALHOST, 47104)).unwrap();
        let taken: HashSet<u16> = [47100, 47101].into();
        let ports = allocate(47100, 2, &taken).unwrap();
        assert_eq!(ports, vec![47102, 47106]);
        drop(busy);
    }
}
