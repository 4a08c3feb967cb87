//! JSON calls to the companion with `fetch`.

use std::time::Duration;

use ferry_core::Failure;
use ferry_core::protocol::ErrorBody;
use serde::de::DeserializeOwned;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestInit, Response};

/// Where the headers of companion calls (such as `Authorization`) come from.
pub enum HeaderSource {
    /// The same headers on every call.
    Fixed(Vec<(String, String)>),
    /// The application's function, called before every call with `{ refresh }` (true after the
    /// companion answered 401), returning the headers or a Promise of them: a token that
    /// expires during a long upload is replaced, not fatal.
    Function(js_sys::Function),
}

/// The headers of companion calls, and the latest ones resolved, for the requests that must
/// start at once (the fallback PUTs).
pub struct CompanionHeaders {
    source: HeaderSource,
    latest: std::cell::RefCell<Vec<(String, String)>>,
}

impl CompanionHeaders {
    pub fn new(source: HeaderSource) -> Self {
        let latest = match &source {
            HeaderSource::Fixed(headers) => headers.clone(),
            HeaderSource::Function(_) => Vec::new(),
        };
        Self {
            source,
            latest: std::cell::RefCell::new(latest),
        }
    }

    /// The headers the last call used.
    pub fn latest(&self) -> Vec<(String, String)> {
        self.latest.borrow().clone()
    }

    /// The headers for a call; `refresh` says the last ones were refused.
    async fn resolve(&self, refresh: bool) -> Result<Vec<(String, String)>, Failure> {
        let HeaderSource::Function(function) = &self.source else {
            return Ok(self.latest());
        };
        // The application could not give headers now (its token service may be down too):
        // no request went out, so the call is waited out like one that got no answer.
        let refused = |err: &wasm_bindgen::JsValue| {
            Failure::network(format!("the headers function failed: {}", describe(err)))
        };
        let context = js_sys::Object::new();
        js_sys::Reflect::set(&context, &"refresh".into(), &refresh.into())
            .expect("set on a plain object");
        let mut value = function
            .call1(&wasm_bindgen::JsValue::NULL, &context)
            .map_err(|err| refused(&err))?;
        if let Some(promise) = value.dyn_ref::<js_sys::Promise>() {
            value = JsFuture::from(promise.clone())
                .await
                .map_err(|err| refused(&err))?;
        }
        let object: &js_sys::Object = value
            .dyn_ref()
            .ok_or_else(|| refused(&"it returned no object of headers".into()))?;
        let headers = js_sys::Object::entries(object)
            .iter()
            .filter_map(|entry| {
                let entry: js_sys::Array = entry.unchecked_into();
                Some((entry.get(0).as_string()?, entry.get(1).as_string()?))
            })
            .collect::<Vec<_>>();
        *self.latest.borrow_mut() = headers.clone();
        Ok(headers)
    }

    fn refreshes(&self) -> bool {
        matches!(self.source, HeaderSource::Function(_))
    }

    /// After a fallback PUT was answered 401: asks the application for fresh headers, which
    /// the next attempt uses. When it gave other headers than the refused ones, the 401 becomes
    /// a failure that spends nothing (the part goes again after a short wait); otherwise it
    /// stays the refusal it was, as a JSON call's second 401 does.
    pub async fn refreshed_for_put(&self, refused: &Failure) -> Failure {
        if !self.refreshes() {
            return refused.clone();
        }
        let before = self.latest();
        match self.resolve(true).await {
            Ok(fresh) if fresh != before => {
                Failure::network("the companion refused the headers: sending with fresh ones")
            }
            Ok(_) => refused.clone(),
            Err(failure) => failure,
        }
    }
}

/// Calls the companion at `url` with fresh headers; a 401 asks the application for new ones and
/// tries once more. A non-2xx answer is a [`Failure`] with the companion's code (for store
/// refusals, the store's S3 code); no answer at all is a network failure.
pub async fn call<T: DeserializeOwned>(
    method: &str,
    url: &str,
    headers: &CompanionHeaders,
    json: Option<String>,
) -> Result<T, Failure> {
    let first = send(method, url, &headers.resolve(false).await?, json.clone()).await;
    match first {
        Err(failure) if failure.status == Some(401) && headers.refreshes() => {
            send(method, url, &headers.resolve(true).await?, json).await
        }
        other => other,
    }
}

async fn send<T: DeserializeOwned>(
    method: &str,
    url: &str,
    extra_headers: &[(String, String)],
    json: Option<String>,
) -> Result<T, Failure> {
    let network = |err: &wasm_bindgen::JsValue| {
        Failure::network(format!("{method} {url}: {}", describe(err)))
    };
    let init = RequestInit::new();
    init.set_method(method);
    // A call that never answers must not hold its file forever: it fails as a network error.
    init.set_signal(Some(&web_sys::AbortSignal::timeout_with_u32(
        CALL_TIMEOUT_MS,
    )));
    let headers = js_sys::Object::new();
    let set = |name: &str, value: &str| {
        js_sys::Reflect::set(&headers, &name.into(), &value.into()).expect("set on a plain object")
    };
    for (name, value) in extra_headers {
        set(name, value);
    }
    if let Some(json) = json {
        init.set_body(&json.into());
        set("content-type", "application/json");
    }
    init.set_headers(&headers);
    let window = web_sys::window().ok_or_else(|| Failure::network("no window"))?;
    let response: Response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|err| network(&err))?
        .unchecked_into();
    let text = JsFuture::from(response.text().map_err(|err| network(&err))?)
        .await
        .map_err(|err| network(&err))?
        .as_string()
        .unwrap_or_default();
    let status = response.status();
    if !(200..300).contains(&status) {
        let retry_after = response.headers().get("retry-after").ok().flatten();
        return Err(failure_from_answer(status, &text, retry_after));
    }
    // An empty answer (204) reads as JSON null.
    let text = if text.is_empty() { "null" } else { &text };
    serde_json::from_str(text).map_err(|err| Failure {
        status: Some(status),
        code: "BadAnswer".into(),
        message: format!("the companion's answer could not be read: {err}"),
        retry_after: None,
    })
}

/// `Retry-After` in seconds (the HTTP-date form is not used by S3 or the companion). Nonsense
/// (negative, infinite, huge) is ignored rather than trusted.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    Duration::try_from_secs_f64(value.trim().parse::<f64>().ok()?).ok()
}

/// A failed answer: the code and message of its S3 or companion error body, and `Retry-After`.
pub fn failure_from_answer(status: u16, body: &str, retry_after: Option<String>) -> Failure {
    let (code, message) = s3_error(body)
        .or_else(|| {
            let error: ErrorBody = serde_json::from_str(body).ok()?;
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

/// How long a call to the companion may take before it counts as lost.
const CALL_TIMEOUT_MS: u32 = 30_000;

fn describe(err: &wasm_bindgen::JsValue) -> String {
    err.dyn_ref::<js_sys::Error>()
        .map(|err| String::from(err.message()))
        .or_else(|| err.as_string())
        .unwrap_or_else(|| "fetch failed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let failure = failure_from_answer(503, s3, Some("3".into()));
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
        let failure = failure_from_answer(403, companion, None);
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
        let unreadable = failure_from_answer(503, "<Error><Code>SlowDown</Code>", None);
        assert_eq!(
            unreadable.code, "Http503",
            "a broken body falls back to the status"
        );

        // A proxy's page: no code of its own, a status code and the start of the text.
        let page = format!("<html>{}</html>", "x".repeat(500));
        let failure = failure_from_answer(502, &page, None);
        assert_eq!(failure.code, "Http502");
        assert_eq!(failure.message.chars().count(), 200);
        assert!(failure.is_outage());
    }
}
