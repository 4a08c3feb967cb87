//! JSON calls to the companion with `fetch`.

use std::time::Duration;

use ferry_core::Failure;
use ferry_core::protocol::ErrorBody;
use serde::de::DeserializeOwned;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestInit, Response};

/// Calls the companion at `url`. A non-2xx answer is a [`Failure`] with the companion's code
/// (for store refusals, the store's S3 code); no answer at all is a network failure.
pub async fn call<T: DeserializeOwned>(
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
    let (code, message) = ferry_core::s3xml::error(body)
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

/// How long a call to the companion may take before it counts as lost.
const CALL_TIMEOUT_MS: u32 = 30_000;

fn describe(err: &wasm_bindgen::JsValue) -> String {
    err.dyn_ref::<js_sys::Error>()
        .map(|err| String::from(err.message()))
        .or_else(|| err.as_string())
        .unwrap_or_else(|| "fetch failed".into())
}
