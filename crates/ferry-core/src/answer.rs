//! Reading a failed answer, for the drivers: the code and message of an S3 `<Error>` document or
//! the companion's JSON error body, and `Retry-After`. The JSON is read by the driver's own
//! reader (the browser's `JSON` in the wasm, where a JSON parser would weigh on the package).

use std::time::Duration;

use crate::json::{FromJson as _, Json};
use crate::protocol::ErrorBody;
use crate::retry::Failure;
use crate::text::split_once;

/// `Retry-After` in seconds, whole or decimal (the HTTP-date form is not used by S3 or the
/// companion). Nonsense (negative, exponents, huge) is ignored rather than trusted. Read digit
/// by digit: a float parser would bring its 20 KB table of powers into the wasm.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = |text: &str| text.bytes().all(|byte| byte.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !digits(whole) || !digits(fraction) {
        return None;
    }
    let secs = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    // Nanoseconds: the first nine decimals, the rest past any clock's resolution.
    let nanos = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0, |nanos, digit| nanos * 10 + u32::from(digit - b'0'));
    Some(Duration::new(secs, nanos))
}

/// A failed answer: the code and message of its S3 or companion error body, and
/// `Retry-After`.
pub fn failure_from_answer(status: u16, body: &str, retry_after: Option<String>) -> Failure {
    failure_read_by(|text| Json::parse(text).ok(), status, body, retry_after)
}

/// [`failure_from_answer`] with the driver's JSON reader: the wasm's is the browser's.
pub fn failure_read_by(
    read_json: impl FnOnce(&str) -> Option<Json>,
    status: u16,
    body: &str,
    retry_after: Option<String>,
) -> Failure {
    let (code, message) = s3_error(body)
        .or_else(|| {
            let error = ErrorBody::from_json(&read_json(body)?).ok()?;
            Some((error.code, error.message))
        })
        .unwrap_or_else(|| (format!("Http{status}"), body.chars().take(200).collect()));
    Failure {
        status: Some(status),
        code,
        message,
        retry_after: retry_after.as_deref().and_then(parse_retry_after),
    }
}

/// `(code, message)` of an S3 `<Error>` document: the first `Code` and `Message` children of the
/// root count; anything malformed (an element left open or closed by another name, a root of
/// another name) is no error document, and the caller falls back to the status. Read by a few
/// lines of its own, not an XML library, which would weigh more in the npm package than the
/// rest of the engine's answers. It slices with `get`: indexing a `str` would bring core's
/// panic message for a cut inside a character, with its Unicode tables (3 KB of wasm).
fn s3_error(xml: &str) -> Option<(String, String)> {
    let mut rest = xml;
    // The names of the open elements, the root first.
    let mut open: Vec<&str> = Vec::new();
    // The text of the field being read (a child of the root).
    let mut text = String::new();
    let (mut code, mut message) = (None, None);
    loop {
        // A document that ends with elements open is no document.
        let start = rest.find('<')?;
        if open.len() == 2 {
            text.push_str(&unescape(rest.get(..start)?)?);
        }
        rest = rest.get(start..)?;
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = split_once(after, "-->")?.1;
        } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let (data, after) = split_once(after, "]]>")?;
            if open.len() == 2 {
                text.push_str(data);
            }
            rest = after;
        } else if let Some(after) = rest.strip_prefix("<?") {
            rest = split_once(after, "?>")?.1;
        } else if let Some(after) = rest.strip_prefix("<!") {
            // A DOCTYPE: skipped whole, so an entity it declares is never expanded.
            rest = after_doctype(after)?;
        } else {
            let (tag, after) = split_tag(rest.get(1..)?)?;
            rest = after;
            if let Some(name) = tag.strip_prefix('/') {
                let name = name.trim_end();
                if open.pop()? != name {
                    return None;
                }
                if open.len() == 1 {
                    let value = std::mem::take(&mut text);
                    match local_name(name) {
                        "Code" => _ = code.get_or_insert(value),
                        "Message" => _ = message.get_or_insert(value),
                        _ => {}
                    }
                }
                if open.is_empty() {
                    let code = code.filter(|code: &String| !code.is_empty());
                    return Some((
                        code.unwrap_or_else(|| "Unknown".to_owned()),
                        message.unwrap_or_default(),
                    ));
                }
            } else {
                let empty = tag.ends_with('/');
                let name = tag.trim_end_matches('/').split_ascii_whitespace().next()?;
                if open.is_empty() && local_name(name) != "Error" {
                    return None;
                }
                match (empty, open.len()) {
                    (true, 0) => return Some(("Unknown".to_owned(), String::new())),
                    (true, _) => {}
                    (false, depth) => {
                        if depth == 1 {
                            text.clear();
                        }
                        open.push(name);
                    }
                }
            }
        }
    }
}

/// A tag's inside (what comes after its `<`) and what follows its `>`, which may not be inside
/// a quoted attribute value.
fn split_tag(rest: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    for (index, char) in rest.char_indices() {
        match (quote, char) {
            (None, '"' | '\'') => quote = Some(char),
            (Some(open), _) if char == open => quote = None,
            (None, '>') => return Some((rest.get(..index)?, rest.get(index + 1..)?)),
            _ => {}
        }
    }
    None
}

/// What follows a `<!DOCTYPE ..>` (given after its `<!`), whose internal subset in `[..]` may
/// hold `>`.
fn after_doctype(rest: &str) -> Option<&str> {
    let mut subset = false;
    for (index, char) in rest.char_indices() {
        match char {
            '[' => subset = true,
            ']' => subset = false,
            '>' if !subset => return rest.get(index + 1..),
            _ => {}
        }
    }
    None
}

/// A name without its namespace prefix.
fn local_name(name: &str) -> &str {
    // Found by hand: `rsplit_once` brings a searcher of its own into the wasm.
    let prefix_end = name.bytes().rposition(|byte| byte == b':');
    prefix_end
        .and_then(|end| name.get(end + 1..))
        .unwrap_or(name)
}

/// Text with its references resolved: the five XML escapes and numeric characters. Any other
/// entity (one a DOCTYPE declares) reads as nothing; a `&` without its `;` is no text.
fn unescape(text: &str) -> Option<String> {
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        plain.push_str(rest.get(..amp)?);
        let (name, after) = rest.get(amp + 1..)?.split_once(';')?;
        let number = match name.strip_prefix("#x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => name
                .strip_prefix('#')
                .and_then(|decimal| decimal.parse().ok()),
        };
        match (number.and_then(char::from_u32), name) {
            (Some(char), _) => plain.push(char),
            (None, "lt") => plain.push('<'),
            (None, "gt") => plain.push('>'),
            (None, "amp") => plain.push('&'),
            (None, "quot") => plain.push('"'),
            (None, "apos") => plain.push('\''),
            _ => {}
        }
        rest = after;
    }
    plain.push_str(rest);
    Some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn answer(status: u16, body: &str, retry_after: Option<String>) -> Failure {
        failure_from_answer(status, body, retry_after)
    }

    #[test]
    fn retry_after_is_seconds_and_nonsense_is_ignored() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(".25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_retry_after("1.0000000019"), Some(Duration::new(1, 1)));
        for nonsense in [
            "-1",
            "inf",
            "NaN",
            "1e400",
            "",
            ".",
            "1.2.3",
            "99999999999999999999999",
            "Wed, 21 Oct 2026 07:28:00 GMT",
        ] {
            assert_eq!(parse_retry_after(nonsense), None, "{nonsense:?}");
        }
    }

    #[test]
    fn failures_carry_the_code_and_message_of_their_answer() {
        let s3 = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Reduce your rate &lt; 5/s</Message><RequestId>r</RequestId></Error>";
        let failure = answer(503, s3, Some("3".into()));
        assert_eq!(
            (
                failure.status,
                failure.code.as_str(),
                failure.message.as_str()
            ),
            (Some(503), "SlowDown", "Reduce your rate < 5/s")
        );
        assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));

        let companion = r#"{"code":"TokenExpired","message":"the upload token has expired"}"#;
        let failure = answer(403, companion, None);
        assert_eq!(
            (failure.code.as_str(), failure.message.as_str()),
            ("TokenExpired", "the upload token has expired")
        );
        assert_eq!(failure.retry_after, None);

        assert_eq!(
            s3_error("<Error/>"),
            Some(("Unknown".into(), String::new()))
        );
        assert_eq!(
            s3_error("<ListPartsResult><Code>x</Code></ListPartsResult>"),
            None
        );
        // What a hostile store or proxy might send: none of it becomes a code it did not state.
        for (body, read) in [
            ("<Error><Code>SlowDown</Code>", None),
            ("<Error><Code>A</Message></Error>", None),
            (
                "<Error><Code>First</Code><Code>Second</Code><Message>m &#65;</Message></Error>",
                Some(("First", "m A")),
            ),
            (
                "<!DOCTYPE Error [<!ENTITY x \"boom\">]><Error><Code>&x;</Code><Message>&x;</Message></Error>",
                Some(("Unknown", "")),
            ),
            (
                "<Error><Code><b>Nested</b></Code></Error>",
                Some(("Unknown", "")),
            ),
            // What real stores send around the two fields.
            (
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- r2 --><s3:Error xmlns:s3=\"x\" a='>'><s3:Code>NoSuchUpload</s3:Code><Message><![CDATA[gone <now>]]> &#x41;&amp;</Message><Resource/></s3:Error>",
                Some(("NoSuchUpload", "gone <now> A&")),
            ),
            ("<Error><Code>A &unclosed</Code></Error>", None),
            ("<Error><Code>A</Code></Error", None),
            ("<Other/>", None),
            ("", None),
            // Hostile shapes: each ends in no document or in only what the document states.
            ("<Error a=\"never closed><Code>X</Code></Error>", None),
            ("<><Error/>", None),
            ("<Error></></Error>", None),
            ("<!DOCTYPE Error [ <!ENTITY x \">\">", None),
            ("<!-- <Error/>", None),
            (
                "<Error><Code>&#xD800;&#x110000;&#99999999999;A&#x42;</Code></Error>",
                Some(("AB", "")),
            ),
            (
                &format!(
                    "<Error>{}<Code>Deep</Code>{}</Error>",
                    "<a>".repeat(10_000),
                    "</a>".repeat(10_000)
                ),
                Some(("Unknown", "")),
            ),
        ] {
            let read =
                read.map(|(code, message): (&str, &str)| (code.to_owned(), message.to_owned()));
            assert_eq!(s3_error(body), read, "{body}");
        }
        let unreadable = answer(503, "<Error><Code>SlowDown</Code>", None);
        assert_eq!(
            unreadable.code, "Http503",
            "a broken body falls back to the status"
        );

        // A proxy's page: no code of its own, a status code and the start of the text.
        let page = format!("<html>{}</html>", "x".repeat(500));
        let failure = answer(502, &page, None);
        assert_eq!(failure.code, "Http502");
        assert_eq!(failure.message.chars().count(), 200);
        assert!(failure.is_outage());
    }
}
