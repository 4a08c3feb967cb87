//! JSON calls to the companion with `fetch`.

use ferry_core::Failure;
use ferry_core::json::FromJson;
use wasm_bindgen::{JsCast, UnwrapThrowExt as _};
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestInit, Response};

use crate::{describe, json};

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
            .expect_throw("set on a plain object");
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
/// refusals, the store's S3 code); no answer at all is a network failure. The answer's status
/// and text, for [`read_answer`]: one body for every call, however many answer types there are
/// (a generic `async` body is a state machine per type in the wasm).
pub async fn call(
    method: &str,
    url: &str,
    headers: &CompanionHeaders,
    json: Option<String>,
) -> Result<Answer, Failure> {
    let first = send(method, url, &headers.resolve(false).await?, json.clone()).await;
    match first {
        Err(failure) if failure.status == Some(401) && headers.refreshes() => {
            send(method, url, &headers.resolve(true).await?, json).await
        }
        other => other,
    }
}

/// A 2xx answer of the companion: its status and body.
pub struct Answer {
    pub status: u16,
    pub text: String,
}

/// Reads a companion's answer as JSON; an empty one (204) reads as `null`.
pub fn read_answer<T: FromJson>(answer: Answer) -> Result<T, Failure> {
    let text = if answer.text.is_empty() {
        "null"
    } else {
        &answer.text
    };
    json::read(text).map_err(|err| Failure {
        status: Some(answer.status),
        code: "BadAnswer".into(),
        message: format!("the companion's answer could not be read: {err}"),
        retry_after: None,
    })
}

async fn send(
    method: &str,
    url: &str,
    extra_headers: &[(String, String)],
    json: Option<String>,
) -> Result<Answer, Failure> {
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
        js_sys::Reflect::set(&headers, &name.into(), &value.into())
            .expect_throw("set on a plain object")
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
        return Err(json::failure(status, &text, retry_after));
    }
    Ok(Answer { status, text })
}

/// How long a call to the companion may take before it counts as lost.
const CALL_TIMEOUT_MS: u32 = 30_000;
