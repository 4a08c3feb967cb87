//! Object keys are chosen here, never by the client: `<prefix><owner>/<random id>/<file name>`.

/// Longest file name kept in a key, in bytes (S3 allows 1,024 for the whole key).
const MAX_NAME_BYTES: usize = 200;

/// The file name as it may appear in a key: readable (unicode letters stay), but with no path
/// separators, no control characters, no leading dots and a bounded length.
pub fn sanitize_file_name(name: &str) -> String {
    // Browsers give a bare name, but other clients may send a path: keep its last segment.
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut clean = String::with_capacity(last.len());
    for c in last.chars() {
        let keep =
            c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ' | '(' | ')' | '+' | ',');
        let c = if keep { c } else { '_' };
        if clean.len() + c.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        clean.push(c);
    }
    let clean = clean.trim().trim_start_matches('.');
    if clean.is_empty() {
        "file".to_owned()
    } else {
        clean.to_owned()
    }
}

/// A fresh key for `name` uploaded by `owner`.
pub fn object_key(prefix: &str, owner: &str, name: &str) -> String {
    let id: [u8; 12] = rand::random();
    format!(
        "{prefix}{}/{}/{}",
        sanitize_file_name(owner),
        hex::encode(id),
        sanitize_file_name(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe_and_stay_readable() {
        for (input, expected) in [
            ("cat.png", "cat.png"),
            ("../../etc/passwd", "passwd"),
            ("..\\..\\boot.ini", "boot.ini"),
            ("...hidden", "hidden"),
            ("", "file"),
            ("..", "file"),
            ("a\u{0}b\nc\rd", "a_b_c_d"),
            ("résumé 2026 (final).pdf", "résumé 2026 (final).pdf"),
            ("日本語.txt", "日本語.txt"),
            ("a?b#c%d&e.txt", "a_b_c_d_e.txt"),
        ] {
            assert_eq!(sanitize_file_name(input), expected, "{input:?}");
        }
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let name = "é".repeat(300);
        let clean = sanitize_file_name(&name);
        assert!(clean.len() <= MAX_NAME_BYTES);
        assert_eq!(clean, "é".repeat(MAX_NAME_BYTES / 2));
    }

    #[test]
    fn keys_are_unique_and_prefixed() {
        let a = object_key("uploads/", "anonymous", "x.bin");
        let b = object_key("uploads/", "anonymous", "x.bin");
        assert_ne!(a, b);
        assert!(
            a.starts_with("uploads/anonymous/") && a.ends_with("/x.bin"),
            "{a}"
        );
    }
}
