//! Searching text for a few bytes. `str::find` and its kin with a string pattern bring the
//! two-way searcher, about 3 KB of wasm; the engine looks for needles of a few bytes in short
//! texts (S3's error bodies, a URL), where a plain scan is as fast.

/// Where `needle` first is in `haystack`, as `haystack.find(needle)`.
pub fn find(haystack: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window == needle.as_bytes())
}

/// `haystack` before and after the first `needle`, as `haystack.split_once(needle)`.
pub fn split_once<'a>(haystack: &'a str, needle: &str) -> Option<(&'a str, &'a str)> {
    let at = find(haystack, needle)?;
    // `get`: indexing would bring the panic of a cut inside a character into the wasm.
    Some((haystack.get(..at)?, haystack.get(at + needle.len()..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_str_finds() {
        let haystacks = [
            "",
            "a",
            "-->",
            "x-->y-->z",
            "--",
            "é-->ü",
            "]]]>",
            "abcabd",
            "ab",
        ];
        for haystack in haystacks {
            for needle in ["-->", "]]>", "://", "a", "abd", "é", "--->", ""] {
                assert_eq!(
                    find(haystack, needle),
                    haystack.find(needle),
                    "{haystack:?} {needle:?}"
                );
                assert_eq!(
                    split_once(haystack, needle),
                    haystack.split_once(needle),
                    "{haystack:?} {needle:?}"
                );
            }
        }
    }
}
