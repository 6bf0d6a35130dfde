//! Random ids: blob files, upload ids.

/// A new random id: 32 lowercase hex digits.
pub(crate) fn new_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    hex_simd::encode_to_string(b, hex_simd::AsciiCase::Lower)
}

/// Whether `name` is an id as [`new_id`] makes them (so it is safe in a path or object name).
pub(crate) fn is_id(name: &str) -> bool {
    name.len() == 32
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
