//! Random identifiers handed to clients.

use rand::Rng;

/// A random UUID v4 string, the id format mediasoup uses for its objects.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::thread_rng().gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A short random room id (URL-friendly, valid per shared/protocol.md).
pub fn room_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_have_the_v4_shape_and_differ() {
        let a = super::uuid_v4();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, super::uuid_v4());
    }

    #[test]
    fn room_ids_are_valid_room_ids() {
        assert!(crate::signaling::protocol::is_valid_room_id(
            &super::room_id()
        ));
    }
}
