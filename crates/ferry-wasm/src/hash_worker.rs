//! The package's hashing Worker: large parts are read and hashed there, off the page's thread.
//!
//! The npm entry point provides the way to start it (`js/hash-worker.js`), in the form bundlers
//! follow; the Worker (`js/worker.js`) instantiates the page's own compiled module, posted to it,
//! and answers each part with the `checksum()` the page would have computed. Without a Worker (a
//! page built by trunk, a policy that forbids Workers, a Worker that failed), parts are hashed on
//! the page as before.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use ferry_core::ChecksumAlgorithm;
use futures_channel::oneshot;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Blob, MessageEvent, Worker};

#[wasm_bindgen(module = "/js/hash-worker.js")]
extern "C" {
    #[wasm_bindgen(js_name = startHashWorker)]
    fn start_hash_worker() -> Option<Worker>;
}

/// What the Worker answered for one part: its checksum, or why its bytes could not be read.
type Answer = Result<String, String>;

type Pending = Rc<RefCell<HashMap<u32, oneshot::Sender<Answer>>>>;

pub struct HashWorker {
    worker: Worker,
    pending: Pending,
    next_id: Cell<u32>,
    broken: Rc<Cell<bool>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

thread_local! {
    static WORKER: std::cell::OnceCell<Option<Rc<HashWorker>>> = const { std::cell::OnceCell::new() };
}

impl HashWorker {
    /// The page's hashing Worker, started on first use; `None` where there is none or it failed.
    pub fn get() -> Option<Rc<HashWorker>> {
        let worker = WORKER.with(|cell| cell.get_or_init(Self::start).clone())?;
        (!worker.broken.get()).then_some(worker)
    }

    fn start() -> Option<Rc<HashWorker>> {
        let worker = start_hash_worker()?;
        let pending: Pending = Rc::default();
        let broken = Rc::new(Cell::new(false));
        let on_message = {
            let pending = pending.clone();
            let broken = broken.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let data = event.data();
                let field = |name: &str| {
                    js_sys::Reflect::get(&data, &name.into())
                        .ok()
                        .and_then(|value| value.as_string())
                };
                let Some(id) = js_sys::Reflect::get(&data, &"id".into())
                    .ok()
                    .and_then(|id| id.as_f64())
                else {
                    return;
                };
                let answer = if let Some(value) = field("value") {
                    Ok(value)
                } else if let Some(error) = field("error") {
                    Err(error)
                } else {
                    // The Worker could not instantiate the module: the page hashes from now on.
                    broken.set(true);
                    pending.borrow_mut().clear();
                    return;
                };
                if let Some(sender) = pending.borrow_mut().remove(&(id as u32)) {
                    let _ = sender.send(answer);
                }
            })
        };
        // A script that did not load, or an error it did not catch: every waiting part is
        // hashed on the page instead (dropping a sender tells its receiver).
        let on_error = {
            let pending = pending.clone();
            let broken = broken.clone();
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
                broken.set(true);
                pending.borrow_mut().clear();
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        worker.set_onmessageerror(Some(on_error.as_ref().unchecked_ref()));
        // The page's compiled module: the Worker instantiates it without fetching it again.
        let init = js_sys::Object::new();
        js_sys::Reflect::set(&init, &"module".into(), &wasm_bindgen::module()).ok()?;
        worker.post_message(&init).ok()?;
        Some(Rc::new(HashWorker {
            worker,
            pending,
            next_id: Cell::new(0),
            broken,
            _on_message: on_message,
            _on_error: on_error,
        }))
    }

    /// The checksum of `blob`'s bytes as the Worker computed it (or why it could not read them);
    /// `None` if the Worker failed, and the page must hash them itself.
    pub async fn checksum(&self, blob: &Blob, algorithm: ChecksumAlgorithm) -> Option<Answer> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (sender, receiver) = oneshot::channel();
        self.pending.borrow_mut().insert(id, sender);
        let request = js_sys::Object::new();
        let posted = js_sys::Reflect::set(&request, &"id".into(), &id.into())
            .and_then(|_| js_sys::Reflect::set(&request, &"blob".into(), blob))
            .and_then(|_| {
                js_sys::Reflect::set(&request, &"algorithm".into(), &algorithm.name().into())
            })
            .and_then(|_| self.worker.post_message(&request));
        if posted.is_err() {
            self.pending.borrow_mut().remove(&id);
            return None;
        }
        receiver.await.ok()
    }
}
