//! Part PUTs with `XMLHttpRequest`: the only browser API that reports upload progress. The body is
//! a `Blob.slice()` handed over as it is, so the bytes never enter wasm memory. A small file with
//! a presigned POST form goes as that form instead.

use ferry_core::Failure;
use ferry_core::protocol::Relayed;
use ferry_core::sorted::SortedMap;
use futures_channel::oneshot;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Blob, FormData, ProgressEvent, XmlHttpRequest};

/// Where the answer's ETag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtagFrom {
    /// The store's `ETag` header (its CORS rule must expose it).
    Header,
    /// The companion's JSON body `{ "etag": .. }` (the fallback route).
    Json,
}

/// A running PUT. Dropping it aborts the request, so no request outlives the code waiting on it.
#[must_use]
pub struct PutRequest {
    xhr: XmlHttpRequest,
    /// Fires at `loadend`: the request is over, answered or not.
    ended: oneshot::Receiver<()>,
    etag_from: EtagFrom,
    _on_progress: Option<Closure<dyn FnMut(ProgressEvent)>>,
    _on_end: Closure<dyn FnMut()>,
}

impl PutRequest {
    /// Starts a PUT of `body` to `url`, calling `on_progress` with the bytes sent so far. With
    /// `form` fields, it is a POST of those fields and `body` as the `file` field instead: a
    /// CORS-simple request, so no preflight goes before it, and no progress is heard (a
    /// listener on the upload would make the browser send a preflight).
    pub fn start(
        url: &str,
        headers: &SortedMap<String, String>,
        form: &SortedMap<String, String>,
        body: &Blob,
        etag_from: EtagFrom,
        on_progress: impl FnMut(f64) + 'static,
    ) -> Result<Self, JsValue> {
        let xhr = XmlHttpRequest::new()?;
        let on_progress = if form.is_empty() {
            xhr.open_with_async("PUT", url, true)?;
            for (name, value) in headers {
                xhr.set_request_header(name, value)?;
            }
            let mut on_progress = on_progress;
            let on_progress =
                Closure::<dyn FnMut(ProgressEvent)>::new(move |event: ProgressEvent| {
                    on_progress(event.loaded())
                });
            xhr.upload()?
                .set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
            Some(on_progress)
        } else {
            xhr.open_with_async("POST", url, true)?;
            None
        };

        // A channel, not a Promise awaited as a future: hearing a request's end needs no Promise
        // and no JsFuture closures, which thousands of small files would pay once each.
        let (end, ended) = oneshot::channel();
        let mut end = Some(end);
        let on_end = Closure::<dyn FnMut()>::new(move || {
            if let Some(end) = end.take() {
                let _ = end.send(());
            }
        });
        xhr.set_onloadend(Some(on_end.as_ref().unchecked_ref()));
        if form.is_empty() {
            xhr.send_with_opt_blob(Some(body))?;
        } else {
            // The file goes last: stores read the fields before it.
            let fields = FormData::new()?;
            for (name, value) in form {
                fields.append_with_str(name, value)?;
            }
            fields.append_with_blob("file", body)?;
            xhr.send_with_opt_form_data(Some(&fields))?;
        }
        Ok(Self {
            xhr,
            ended,
            etag_from,
            _on_progress: on_progress,
            _on_end: on_end,
        })
    }

    /// A handle that can abort this request from elsewhere.
    pub fn abort_handle(&self) -> XmlHttpRequest {
        self.xhr.clone()
    }

    /// Waits for the answer: the part's ETag, or how it failed.
    pub async fn finish(mut self) -> Result<String, Failure> {
        let _ = (&mut self.ended).await;
        let status = self.xhr.status().unwrap_or(0);
        if status == 0 {
            return Err(Failure::network(
                "the request got no answer (network error, blocked host, missing CORS rule, or aborted)",
            ));
        }
        let body = self.xhr.response_text().ok().flatten().unwrap_or_default();
        if !(200..300).contains(&status) {
            let retry_after = self.xhr.get_response_header("Retry-After").ok().flatten();
            return Err(crate::json::failure(status, &body, retry_after));
        }
        let etag = match self.etag_from {
            EtagFrom::Header => self.xhr.get_response_header("ETag").ok().flatten(),
            EtagFrom::Json => crate::json::read::<Relayed>(&body)
                .ok()
                .map(|relayed| relayed.etag),
        };
        etag.ok_or_else(|| Failure {
            status: Some(status),
            code: "MissingETag".into(),
            message: "the answer had no ETag: the store's CORS rule must expose the ETag header"
                .into(),
            retry_after: None,
        })
    }
}

impl Drop for PutRequest {
    fn drop(&mut self) {
        // `Ok(None)`: no `loadend` yet, the request still runs.
        if let Ok(None) = self.ended.try_recv() {
            let _ = self.xhr.abort();
        }
    }
}
