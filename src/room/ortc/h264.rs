//! H264 profile-level-id rules (a port of the `h264-profile-level-id` npm package that
//! mediasoup uses): same-profile checks and the profile-level-id a producer is mapped to.

use super::types::{parameter_as_i64, parameter_as_string, CodecParameters};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    ConstrainedHigh,
    High,
    PredictiveHigh444,
}

/// Level 1b is encoded as 0; every other level is its `level_idc`.
const LEVEL_1B: u8 = 0;
const LEVEL_1: u8 = 10;
const LEVEL_1_1: u8 = 11;
const LEVEL_3_1: u8 = 31;
const KNOWN_LEVELS: [u8; 15] = [10, 11, 12, 13, 20, 21, 22, 30, 31, 32, 40, 41, 42, 50, 51];
const LEVEL_5_2: u8 = 52;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProfileLevelId {
    pub profile: Profile,
    pub level: u8,
}

/// (profile_idc, profile_iop bit pattern, profile); 'x' = don't care.
const PATTERNS: [(u8, &[u8; 8], Profile); 9] = [
    (0x42, b"x1xx0000", Profile::ConstrainedBaseline),
    (0x4D, b"1xxx0000", Profile::ConstrainedBaseline),
    (0x58, b"11xx0000", Profile::ConstrainedBaseline),
    (0x42, b"x0xx0000", Profile::Baseline),
    (0x58, b"10xx0000", Profile::Baseline),
    (0x4D, b"0x0x0000", Profile::Main),
    (0x64, b"00000000", Profile::High),
    (0x64, b"00001100", Profile::ConstrainedHigh),
    (0xF4, b"00000000", Profile::PredictiveHigh444),
];

fn pattern_matches(pattern: &[u8; 8], value: u8) -> bool {
    pattern.iter().enumerate().all(|(i, c)| {
        let bit = (value >> (7 - i)) & 1;
        match c {
            b'1' => bit == 1,
            b'0' => bit == 0,
            _ => true,
        }
    })
}

pub(crate) fn parse_profile_level_id(s: &str) -> Option<ProfileLevelId> {
    if s.len() != 6 {
        return None;
    }
    let numeric = u32::from_str_radix(s, 16).ok()?;
    if numeric == 0 {
        return None;
    }
    let level_idc = (numeric & 0xFF) as u8;
    let profile_iop = ((numeric >> 8) & 0xFF) as u8;
    let profile_idc = ((numeric >> 16) & 0xFF) as u8;
    let level = match level_idc {
        LEVEL_1_1 if profile_iop & 0x10 != 0 => LEVEL_1B,
        l if KNOWN_LEVELS.contains(&l) || l == LEVEL_5_2 => l,
        _ => return None,
    };
    PATTERNS
        .iter()
        .find(|(idc, iop, _)| *idc == profile_idc && pattern_matches(iop, profile_iop))
        .map(|&(_, _, profile)| ProfileLevelId { profile, level })
}

pub(crate) fn profile_level_id_to_string(id: ProfileLevelId) -> Option<String> {
    if id.level == LEVEL_1B {
        return match id.profile {
            Profile::ConstrainedBaseline => Some("42f00b".into()),
            Profile::Baseline => Some("42100b".into()),
            Profile::Main => Some("4d100b".into()),
            _ => None,
        };
    }
    let prefix = match id.profile {
        Profile::ConstrainedBaseline => "42e0",
        Profile::Baseline => "4200",
        Profile::Main => "4d00",
        Profile::ConstrainedHigh => "640c",
        Profile::High => "6400",
        Profile::PredictiveHigh444 => "f400",
    };
    Some(format!("{prefix}{:02x}", id.level))
}

/// The profile-level-id of SDP parameters; a missing one means Constrained Baseline 3.1.
fn parse_sdp_profile_level_id(params: &CodecParameters) -> Option<ProfileLevelId> {
    match parameter_as_string(params.get("profile-level-id")) {
        Some(s) if !s.is_empty() => parse_profile_level_id(&s),
        _ => Some(ProfileLevelId {
            profile: Profile::ConstrainedBaseline,
            level: LEVEL_3_1,
        }),
    }
}

pub(crate) fn is_same_profile(a: &CodecParameters, b: &CodecParameters) -> bool {
    match (parse_sdp_profile_level_id(a), parse_sdp_profile_level_id(b)) {
        (Some(a), Some(b)) => a.profile == b.profile,
        _ => false,
    }
}

fn is_level_asymmetry_allowed(params: &CodecParameters) -> bool {
    parameter_as_i64(params.get("level-asymmetry-allowed")) == Some(1)
}

fn is_less_level(a: u8, b: u8) -> bool {
    if a == LEVEL_1B {
        return b != LEVEL_1 && b != LEVEL_1B;
    }
    if b == LEVEL_1B {
        return a != LEVEL_1;
    }
    a < b
}

/// The profile-level-id to answer with, `Ok(None)` when neither side has one,
/// `Err(())` when the profiles are invalid or differ.
#[allow(clippy::result_unit_err)]
pub(crate) fn profile_level_id_for_answer(
    local: &CodecParameters,
    remote: &CodecParameters,
) -> Result<Option<String>, ()> {
    let has = |p: &CodecParameters| {
        parameter_as_string(p.get("profile-level-id")).is_some_and(|s| !s.is_empty())
    };
    if !has(local) && !has(remote) {
        return Ok(None);
    }
    let local_id = parse_sdp_profile_level_id(local).ok_or(())?;
    let remote_id = parse_sdp_profile_level_id(remote).ok_or(())?;
    if local_id.profile != remote_id.profile {
        return Err(());
    }
    let asymmetry = is_level_asymmetry_allowed(local) && is_level_asymmetry_allowed(remote);
    let min_level = if is_less_level(local_id.level, remote_id.level) {
        local_id.level
    } else {
        remote_id.level
    };
    let level = if asymmetry { local_id.level } else { min_level };
    Ok(profile_level_id_to_string(ProfileLevelId {
        profile: local_id.profile,
        level,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_level_ids_parse_like_the_npm_package() {
        let cb31 = parse_profile_level_id("42e01f").unwrap();
        assert_eq!(
            cb31,
            ProfileLevelId {
                profile: Profile::ConstrainedBaseline,
                level: 31
            }
        );
        assert_eq!(
            parse_profile_level_id("42001f").unwrap().profile,
            Profile::Baseline
        );
        assert_eq!(
            parse_profile_level_id("4d001f").unwrap().profile,
            Profile::Main
        );
        assert_eq!(
            parse_profile_level_id("640032").unwrap().profile,
            Profile::High
        );
        assert_eq!(parse_profile_level_id("42f00b").unwrap().level, LEVEL_1B);
        assert!(parse_profile_level_id("42e0ff").is_none());
        assert!(parse_profile_level_id("zzzzzz").is_none());
        assert_eq!(profile_level_id_to_string(cb31).unwrap(), "42e01f");
    }
}
