//! Part PUTs with `XMLHttpRequest`: the only browser API that reports upload progress. The body is
//! a `Blob.slice()` handed over as it is, so the bytes never enter wasm memory.

use std::cell::Cell;
use std::rc::Rc;

use ferry_core::UploadError;
use ferry_core::protocol::SignedUrl;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Blob, ProgressEvent, XmlHttpRequest};

/// A running PUT. Dropping it aborts the request, so no request outlives the code waiting on it.
#[must_use]
pub struct PutRequest {
    xhr: XmlHttpRequest,
    finished: Rc<Cell<bool>>,
    done: js_sys::Promise,
    _on_progress: Closure<dyn FnMut(ProgressEvent)>,
    _on_end: Closure<dyn FnMut()>,
}

impl PutRequest {
    /// Starts a PUT of `body` to `url`, calling `on_progress` with the bytes sent so far.
    pub fn start(
        url: &SignedUrl,
        body: &Blob,
        on_progress: impl FnMut(f64) + 'static,
    ) -> Result<Self, JsValue> {
        let xhr = XmlHttpRequest::new()?;
        xhr.open_with_async("PUT", &url.url, true)?;
        for (name, value) in &url.headers {
            xhr.set_request_header(name, value)?;
        }
        let mut on_progress = on_progress;
        let on_progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |event: ProgressEvent| {
            on_progress(event.loaded())
        });
        xhr.upload()?
            .set_onprogress(Some(on_progress.as_ref().unchecked_ref()));

        let finished = Rc::new(Cell::new(false));
        let mut resolve_slot: Option<js_sys::Function> = None;
        let done = js_sys::Promise::new(&mut |resolve, _reject| resolve_slot = Some(resolve));
        let resolve = resolve_slot.expect("the Promise executor runs at once");
        let end_flag = finished.clone();
        let on_end = Closure::<dyn FnMut()>::new(move || {
            end_flag.set(true);
            let _ = resolve.call0(&JsValue::NULL);
        });
        xhr.set_onloadend(Some(on_end.as_ref().unchecked_ref()));
        xhr.send_with_opt_blob(Some(body))?;
        Ok(Self {
            xhr,
            finished,
            done,
            _on_progress: on_progress,
            _on_end: on_end,
        })
    }

    /// A handle that can abort this request from elsewhere.
    pub fn abort_handle(&self) -> XmlHttpRequest {
        self.xhr.clone()
    }

    /// Waits for the answer: the part's ETag, or why there is none.
    pub async fn finish(self, part: u32) -> Result<String, UploadError> {
        let _ = wasm_bindgen_futures::JsFuture::from(self.done.clone()).await;
        let status = self.xhr.status().unwrap_or(0);
        if status == 0 {
            return Err(UploadError::Network {
                part,
                message: "the request to the store failed (network error, blocked host or missing CORS rule)".into(),
            });
        }
        let body = self.xhr.response_text().ok().flatten().unwrap_or_default();
        if !(200..300).contains(&status) {
            let (code, message) = ferry_core::s3xml::error(&body)
                .unwrap_or_else(|| (format!("Http{status}"), body.chars().take(200).collect()));
            return Err(UploadError::Store {
                part,
                status,
                code,
                message,
            });
        }
        match self.xhr.get_response_header("ETag").ok().flatten() {
            Some(etag) => Ok(etag),
            None => Err(UploadError::Store {
                part,
                status,
                code: "MissingETag".into(),
                message: "the store's CORS rule must expose the ETag header".into(),
            }),
        }
    }
}

impl Drop for PutRequest {
    fn drop(&mut self) {
        if !self.finished.get() {
            let _ = self.xhr.abort();
        }
    }
}
