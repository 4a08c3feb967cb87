//! Reading a failed answer, for the drivers: the code and message of an S3 `<Error>` document or
//! the companion's JSON error body, and `Retry-After`. Behind the `answers` feature, so the
//! engine itself reads no XML. The JSON is read by the driver's own reader (the browser's `JSON`
//! in the wasm, where a JSON parser would weigh on the package).

use std::time::Duration;

use crate::protocol::ErrorBody;
use crate::retry::Failure;

/// `Retry-After` in seconds (the HTTP-date form is not used by S3 or the companion). Nonsense
/// (negative, infinite, huge) is ignored rather than trusted.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    Duration::try_from_secs_f64(value.trim().parse::<f64>().ok()?).ok()
}

/// A failed answer: the code and message of its S3 or companion error body (JSON, read by
/// `read_json`), and `Retry-After`.
pub fn failure_from_answer(
    status: u16,
    body: &str,
    retry_after: Option<String>,
    read_json: impl FnOnce(&str) -> Option<ErrorBody>,
) -> Failure {
    let (code, message) = s3_error(body)
        .or_else(|| {
            let error = read_json(body)?;
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

/// `(code, message)` of an S3 `<Error>` document, read with quick-xml's event reader (its serde
/// layer would add to the package what two fields do not need). The first `Code` and `Message`
/// count; anything malformed is no error document (the caller falls back to the status).
fn s3_error(xml: &str) -> Option<(String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0;
    // The text of the field being read (a child of `<Error>`).
    let mut text = String::new();
    let (mut code, mut message) = (None, None);
    loop {
        match reader.read_event().ok()? {
            Event::Start(start) => {
                depth += 1;
                if depth == 1 && start.local_name().as_ref() != b"Error" {
                    return None;
                }
                if depth == 2 {
                    text.clear();
                }
            }
            Event::Empty(start) if depth == 0 => {
                return (start.local_name().as_ref() == b"Error")
                    .then(|| ("Unknown".to_owned(), String::new()));
            }
            Event::Text(chunk) if depth == 2 => text.push_str(&chunk.xml10_content().ok()?),
            Event::GeneralRef(reference) if depth == 2 => match reference.resolve_char_ref() {
                Ok(Some(char)) => text.push(char),
                // The five XML escapes; an entity a DOCTYPE declares is not expanded.
                _ => text.push_str(match &*reference {
                    b"lt" => "<",
                    b"gt" => ">",
                    b"amp" => "&",
                    b"quot" => "\"",
                    b"apos" => "'",
                    _ => "",
                }),
            },
            Event::End(end) => {
                if depth == 2 {
                    let value = std::mem::take(&mut text);
                    match end.local_name().as_ref() {
                        b"Code" => _ = code.get_or_insert(value),
                        b"Message" => _ = message.get_or_insert(value),
                        _ => {}
                    }
                }
                depth -= 1;
                if depth == 0 {
                    let code = code.filter(|code: &String| !code.is_empty());
                    return Some((
                        code.unwrap_or_else(|| "Unknown".to_owned()),
                        message.unwrap_or_default(),
                    ));
                }
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn answer(status: u16, body: &str, retry_after: Option<String>) -> Failure {
        failure_from_answer(status, body, retry_after, |body| {
            serde_json::from_str(body).ok()
        })
    }

    #[test]
    fn retry_after_is_seconds_and_nonsense_is_ignored() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        for nonsense in [
            "-1",
            "inf",
            "NaN",
            "1e400",
            "",
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
