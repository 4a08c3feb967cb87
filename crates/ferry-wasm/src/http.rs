//! JSON calls to the companion with `fetch`.

use ferry_core::UploadError;
use ferry_core::protocol::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestInit, Response};

/// Calls the companion at `url`; a non-2xx answer becomes [`UploadError::Companion`] with the
/// companion's code, which for store refusals is the store's S3 code.
pub async fn call<T: DeserializeOwned>(
    method: &str,
    url: &str,
    body: Option<&impl Serialize>,
) -> Result<T, UploadError> {
    let unreachable = |message: String| UploadError::CompanionUnreachable {
        endpoint: url.to_owned(),
        message,
    };
    let init = RequestInit::new();
    init.set_method(method);
    if let Some(body) = body {
        let json = serde_json::to_string(body).map_err(|err| unreachable(err.to_string()))?;
        init.set_body(&json.into());
        let headers = js_sys::Object::new();
        js_sys::Reflect::set(&headers, &"content-type".into(), &"application/json".into())
            .expect("set on a plain object");
        init.set_headers(&headers);
    }
    let window = web_sys::window().ok_or_else(|| unreachable("no window".into()))?;
    let response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|err| unreachable(describe(&err)))?;
    let response: Response = response.unchecked_into();
    let text = JsFuture::from(response.text().map_err(|err| unreachable(describe(&err)))?)
        .await
        .map_err(|err| unreachable(describe(&err)))?
        .as_string()
        .unwrap_or_default();
    let status = response.status();
    if !(200..300).contains(&status) {
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(error) => (error.code, error.message),
            Err(_) => (format!("Http{status}"), text.chars().take(200).collect()),
        };
        return Err(UploadError::Companion {
            status,
            code,
            message,
        });
    }
    // An empty answer (204) reads as JSON null.
    let text = if text.is_empty() { "null" } else { &text };
    serde_json::from_str(text).map_err(|err| UploadError::Companion {
        status,
        code: "BadAnswer".into(),
        message: format!("the companion's answer could not be read: {err}"),
    })
}

fn describe(err: &wasm_bindgen::JsValue) -> String {
    err.dyn_ref::<js_sys::Error>()
        .map(|err| String::from(err.message()))
        .or_else(|| err.as_string())
        .unwrap_or_else(|| "fetch failed".into())
}
