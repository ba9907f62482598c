//! Reading back the playlist FFmpeg writes (supervision and tests).

/// What matters of a media playlist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlaylistInfo {
    /// `#EXT-X-MEDIA-SEQUENCE`.
    pub media_sequence: u64,
    /// Segment URIs in order.
    pub segments: Vec<String>,
    /// Number of `#EXT-X-DISCONTINUITY` tags.
    pub discontinuities: usize,
    /// Segments preceded by a discontinuity tag (the first of each FFmpeg run).
    pub discontinuous_segments: Vec<String>,
}

impl PlaylistInfo {
    pub fn parse(text: &str) -> PlaylistInfo {
        let mut info = PlaylistInfo::default();
        let mut pending_discontinuity = false;
        for line in text.lines().map(str::trim) {
            if let Some(seq) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                info.media_sequence = seq.trim().parse().unwrap_or(0);
            } else if line.starts_with("#EXT-X-DISCONTINUITY") && !line.contains("SEQUENCE") {
                info.discontinuities += 1;
                pending_discontinuity = true;
            } else if !line.is_empty() && !line.starts_with('#') {
                if std::mem::take(&mut pending_discontinuity) {
                    info.discontinuous_segments.push(line.to_string());
                }
                info.segments.push(line.to_string());
            }
        }
        info
    }

    /// The number in the last segment's name (`seg_00042.ts` → 42).
    pub fn last_segment_number(&self) -> Option<u64> {
        segment_number(self.segments.last()?)
    }
}

/// The number in a segment's name (`seg_00042.ts` → 42).
pub fn segment_number(name: &str) -> Option<u64> {
    let stem = name.rsplit('/').next()?.split('.').next()?;
    stem.rsplit('_').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_playlist_yields_its_sequence_segments_and_discontinuities() {
        let text = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:3\n\
                    #EXTINF:1.0,\nseg_00003.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.0,\nseg_00004.ts\n";
        let info = PlaylistInfo::parse(text);
        assert_eq!(info.media_sequence, 3);
        assert_eq!(info.segments, vec!["seg_00003.ts", "seg_00004.ts"]);
        assert_eq!(info.discontinuities, 1);
        assert_eq!(info.discontinuous_segments, vec!["seg_00004.ts"]);
        assert_eq!(info.last_segment_number(), Some(4));
    }
}
