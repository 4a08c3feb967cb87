//! Web Locks: one tab at a time uploads a given file. A lock is held until the value that holds
//! it is dropped; a tab that closes or crashes releases its locks by itself.

use futures_channel::oneshot;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks` (web-sys has it only behind its unstable APIs).
    type LockManager;
    #[wasm_bindgen(method, js_name = request)]
    fn request(
        this: &LockManager,
        name: &str,
        options: &JsValue,
        callback: &JsValue,
    ) -> js_sys::Promise;
}

/// A lock this page holds; dropping it releases it.
pub struct Held {
    release: js_sys::Function,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.release.call0(&JsValue::NULL);
    }
}

fn lock_manager() -> Option<LockManager> {
    let navigator = web_sys::window()?.navigator();
    let locks = js_sys::Reflect::get(&navigator, &"locks".into()).ok()?;
    (!locks.is_undefined() && !locks.is_null()).then(|| locks.unchecked_into())
}

/// Asks for the lock `name`: `Some` once granted, `None` if `if_available` and another page
/// holds it (or the request failed).
async fn request(locks: &LockManager, name: &str, if_available: bool) -> Option<Held> {
    let (granted, grant) = oneshot::channel::<Option<js_sys::Function>>();
    // The lock is held until the Promise the callback returns settles: it settles when `Held`
    // is dropped.
    let callback = Closure::once_into_js(move |lock: JsValue| -> js_sys::Promise {
        if lock.is_null() {
            let _ = granted.send(None);
            return js_sys::Promise::resolve(&JsValue::UNDEFINED);
        }
        let mut release = None;
        let held = js_sys::Promise::new(&mut |resolve, _| release = Some(resolve));
        if let Err(Some(release)) = granted.send(release) {
            // Nobody waits for it any more: let it go at once.
            let _ = release.call0(&JsValue::NULL);
        }
        held
    });
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &"ifAvailable".into(), &if_available.into())
        .expect_throw("set on a plain object");
    let _ = locks.request(name, &options, &callback);
    let release = grant.await.ok()??;
    Some(Held { release })
}

/// Takes the lock `name`, waiting while another page holds it. Returns the lock (`None` where
/// the browser has no Web Locks) and whether it had to wait for another holder.
pub async fn acquire(name: &str) -> (Option<Held>, bool) {
    let Some(locks) = lock_manager() else {
        return (None, false);
    };
    if let Some(held) = request(&locks, name, true).await {
        return (Some(held), false);
    }
    (request(&locks, name, false).await, true)
}
