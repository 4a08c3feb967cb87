//! Object keys are chosen here, never by the client: `<prefix><owner>/<random id>/<file name>`.
//! A key a client names on download is checked against that same shape before anything is signed.

/// Longest file name kept in a key, in bytes (S3 allows 1,024 for the whole key).
const MAX_NAME_BYTES: usize = 200;
/// Longest extension kept when a long name is cut: longer "extensions" are part of the name.
const MAX_EXTENSION_BYTES: usize = 16;
/// Bytes of randomness in a key's id segment.
const ID_BYTES: usize = 12;

/// Characters a sanitised name keeps: readable, and none of them special in a URL path or on disk.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ' | '(' | ')' | '+' | ',')
}

/// Names Windows refuses as file names, with or without an extension: a downloaded file must
/// save under its name everywhere.
fn is_windows_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or_default().trim_end();
    let upper = stem.to_ascii_uppercase();
    matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || ["COM", "LPT"].iter().any(|device| {
        upper.strip_prefix(device).is_some_and(|digit| {
            matches!(
                digit,
                "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³"
            )
        })
    })
}

/// The longest prefix of `text` that fits in `max` bytes, cut on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The file name as it may appear in a key: readable (unicode letters stay), but with no path
/// separators, no control characters, no leading dots or trailing dots and spaces, no Windows
/// device names, and a bounded length that keeps the extension.
pub fn sanitize_file_name(name: &str) -> String {
    // Browsers give a bare name, but other clients may send a path: keep its last segment.
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    let clean = clean
        .trim_start_matches([' ', '.'])
        .trim_end_matches([' ', '.']);
    let clean = if clean.len() <= MAX_NAME_BYTES {
        clean.to_owned()
    } else {
        // Cut the stem, not the extension: `report….pdf` still opens as a PDF.
        let extension = clean
            .rfind('.')
            .map(|dot| &clean[dot..])
            .filter(|extension| extension.len() <= MAX_EXTENSION_BYTES)
            .unwrap_or_default();
        let stem = &clean[..clean.len() - extension.len()];
        format!(
            "{}{extension}",
            cut(stem, MAX_NAME_BYTES - extension.len()).trim_end_matches([' ', '.'])
        )
    };
    if clean.is_empty() {
        "file".to_owned()
    } else if is_windows_reserved(&clean) {
        format!("_{clean}")
    } else {
        clean
    }
}

/// Hex digits of the owner's hash in a segment whose name had to be made safe.
const OWNER_HASH_HEX: usize = 16;

/// The key segment of `owner`: its name when that is key-safe, else the name made safe, `@` and a
/// hash of the real one, so that no two owners share a segment (`ops/alice` is not `alice`).
/// `@` is no name character: a key-safe name never looks like a hashed one.
pub fn owner_segment(owner: &str) -> String {
    use sha2::{Digest, Sha256};
    let safe = sanitize_file_name(owner);
    if safe == owner {
        safe
    } else {
        let hash = hex::encode(Sha256::digest(owner.as_bytes()));
        format!("{safe}@{}", &hash[..OWNER_HASH_HEX])
    }
}

/// A fresh key for `name` uploaded by `owner`.
pub fn object_key(prefix: &str, owner: &str, name: &str) -> String {
    let id: [u8; ID_BYTES] = rand::random();
    format!(
        "{prefix}{}/{}/{}",
        owner_segment(owner),
        hex::encode(id),
        sanitize_file_name(name)
    )
}

/// Whether `segment` is one [`owner_segment`] can make.
fn is_owner_segment(segment: &str) -> bool {
    let (name, hash) = match segment.rsplit_once('@') {
        Some((name, hash)) => (name, Some(hash)),
        None => (segment, None),
    };
    name.chars().all(is_name_char)
        && hash.is_none_or(|hash| {
            hash.len() == OWNER_HASH_HEX && hash.bytes().all(|byte| byte.is_ascii_hexdigit())
        })
}

/// Why a key named on download is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is not under this companion's prefix")]
    OutsidePrefix,
    #[error("the key is not <owner>/<id>/<name> under the prefix")]
    WrongShape,
    #[error("the key has an empty, `.` or `..` segment")]
    DotSegment,
    #[error("the key has a character object keys never have")]
    BadCharacter,
    #[error("the key has an encoded separator (%2F or %5C)")]
    EncodedSeparator,
}

/// The owner segment of `key` (compare it with [`owner_segment`]) if it is exactly a key
/// [`object_key`] could have made under
/// `prefix`: so a download signs that one object and nothing else (no `..` for a URL library to
/// resolve, no listing of the bucket, no key outside the prefix).
pub fn owner_of_key<'k>(prefix: &str, key: &'k str) -> Result<&'k str, KeyError> {
    let rest = key.strip_prefix(prefix).ok_or(KeyError::OutsidePrefix)?;
    let segments: Vec<&str> = rest.split('/').collect();
    if segments
        .iter()
        .any(|segment| segment.is_empty() || segment.trim_matches('.').is_empty())
    {
        return Err(KeyError::DotSegment);
    }
    let [owner, id, name] = segments[..] else {
        return Err(KeyError::WrongShape);
    };
    if !(is_owner_segment(owner) && name.chars().all(is_name_char)) {
        return Err(KeyError::BadCharacter);
    }
    let id_ok = id.len() == 2 * ID_BYTES && id.bytes().all(|byte| byte.is_ascii_hexdigit());
    if !id_ok {
        return Err(KeyError::WrongShape);
    }
    Ok(owner)
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
            ("trailing. . ", "trailing"),
        ] {
            assert_eq!(sanitize_file_name(input), expected, "{input:?}");
        }
    }

    #[test]
    fn windows_device_names_are_not_kept_as_they_are() {
        for (input, expected) in [
            ("CON", "_CON"),
            ("nul.txt", "_nul.txt"),
            ("COM1.tar.gz", "_COM1.tar.gz"),
            ("lpt9", "_lpt9"),
            ("aux .txt", "_aux .txt"),
            ("CONSOLE.txt", "CONSOLE.txt"),
            ("COM10", "COM10"),
            ("icon.png", "icon.png"),
        ] {
            assert_eq!(sanitize_file_name(input), expected, "{input:?}");
        }
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary_and_keep_their_extension() {
        let clean = sanitize_file_name(&format!("{}.pdf", "é".repeat(300)));
        assert!(clean.len() <= MAX_NAME_BYTES, "{}", clean.len());
        assert_eq!(
            clean,
            format!("{}.pdf", "é".repeat((MAX_NAME_BYTES - 4) / 2))
        );

        let no_extension = sanitize_file_name(&"x".repeat(500));
        assert_eq!(no_extension, "x".repeat(MAX_NAME_BYTES));

        // A "extension" longer than any real one is part of the name, and is cut with it.
        let long_tail = sanitize_file_name(&format!("a.{}", "y".repeat(300)));
        assert_eq!(long_tail.len(), MAX_NAME_BYTES);
        assert!(long_tail.starts_with("a.yyy"));
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
        assert_eq!(owner_of_key("uploads/", &a), Ok("anonymous"));
    }

    #[test]
    fn owners_never_share_a_segment() {
        assert_eq!(owner_segment("alice"), "alice");
        let ops = owner_segment("ops/alice");
        assert!(
            ops.starts_with("alice@") && ops.len() == "alice@".len() + 16,
            "{ops}"
        );
        assert_ne!(owner_segment("team/alice"), ops);
        let key = object_key("uploads/", "ops/alice", "x.bin");
        assert_eq!(owner_of_key("uploads/", &key), Ok(ops.as_str()));
        for bad in ["alice@xyz", "alice@0123", "a@b@0123456789abcdef"] {
            assert!(!is_owner_segment(bad), "{bad}");
        }
    }

    #[test]
    fn only_keys_of_the_companion_s_own_shape_are_downloadable() {
        let id = "0123456789abcdef01234567";
        assert_eq!(
            owner_of_key("uploads/", &format!("uploads/alice/{id}/résumé (1).pdf")),
            Ok("alice")
        );
        for (key, error) in [
            ("private/x".to_owned(), KeyError::OutsidePrefix),
            ("uploads/../private/x".to_owned(), KeyError::DotSegment),
            ("uploads/..".to_owned(), KeyError::DotSegment),
            ("uploads/../..".to_owned(), KeyError::DotSegment),
            (format!("uploads/alice/{id}/."), KeyError::DotSegment),
            (format!("uploads/alice/{id}/..."), KeyError::DotSegment),
            (format!("uploads/alice//{id}/x"), KeyError::DotSegment),
            (format!("uploads/alice/{id}/x/"), KeyError::DotSegment),
            ("uploads/".to_owned(), KeyError::DotSegment),
            (format!("uploads/alice/{id}"), KeyError::WrongShape),
            (format!("uploads/alice/{id}/a/b"), KeyError::WrongShape),
            ("uploads/alice/not-an-id/x".to_owned(), KeyError::WrongShape),
            (
                format!("uploads/alice/{id}/a\\..\\b"),
                KeyError::BadCharacter,
            ),
            (
                format!("uploads/alice/{id}/a\u{0}b"),
                KeyError::BadCharacter,
            ),
            (format!("uploads/alice/{id}/a\nb"), KeyError::BadCharacter),
            (format!("uploads/alice/{id}/a%2Fb"), KeyError::BadCharacter),
            (
                format!("uploads/alice/{id}/a?list-type=2"),
                KeyError::BadCharacter,
            ),
        ] {
            assert_eq!(owner_of_key("uploads/", &key), Err(error), "{key:?}");
        }
    }
}
