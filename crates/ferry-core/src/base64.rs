//! Standard base64 with padding (RFC 4648 §4), as S3 states checksums. Small enough to write
//! here: the base64 crate's engine was 7 KB of the npm package's wasm.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |group, (index, &byte)| {
                group | u32::from(byte) << (16 - 8 * index)
            });
        for index in 0..4 {
            out.push(if index <= chunk.len() {
                char::from(ALPHABET[(group >> (18 - 6 * index) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

/// The bytes of `text`; none unless it is canonical: padded to a multiple of four, `=` only at
/// the end, and no stray bits in the last character.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let padding = text
        .iter()
        .rev()
        .take(2)
        .take_while(|&&byte| byte == b'=')
        .count();
    let data = &text[..text.len() - padding];
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in data.chunks(4) {
        let mut group = 0u32;
        for (index, &byte) in chunk.iter().enumerate() {
            let value = ALPHABET.iter().position(|&letter| letter == byte)? as u32;
            group |= value << (18 - 6 * index);
        }
        let bytes = chunk.len() * 6 / 8;
        // The bits below the last whole byte must be zero.
        if group & ((1 << (24 - 8 * bytes)) - 1) != 0 {
            return None;
        }
        out.extend((0..bytes).map(|index| (group >> (16 - 8 * index)) as u8));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn agrees_with_the_base64_crate_on_every_length() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let text = encode(&bytes);
            assert_eq!(text, STANDARD.encode(&bytes));
            assert_eq!(decode(&text), Some(bytes));
        }
    }

    #[test]
    fn refuses_what_the_base64_crate_refuses() {
        for text in [
            "A",
            "AA",
            "AAA",
            "AAAAA",
            "A===",
            "====",
            "AA=A",
            "=AAA",
            "AAA*",
            "AA==AAAA",
            "AB==",
            "AAB=",
            "AAAA ",
            " AAAA",
            "AA\u{e9}A",
            "-_AA",
        ] {
            assert_eq!(decode(text), None, "{text:?}");
            assert!(STANDARD.decode(text).is_err(), "the crate reads {text:?}");
        }
        for text in ["", "AA==", "AAA=", "AAAA", "+/+/", "AAAAAA=="] {
            assert_eq!(decode(text), STANDARD.decode(text).ok(), "{text:?}");
        }
    }
}
