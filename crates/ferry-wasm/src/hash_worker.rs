//! The package's hashing Worker: large parts are read and hashed there, off the page's thread.
//!
//! The npm entry point provides the way to start it (`js/hash-worker.js`), in the form bundlers
//! follow; the Worker (`js/worker.js`) instantiates the page's own compiled module, posted to it,
//! and answers each part with the `checksum()` the page would have computed. Without a Worker (a
//! page built by trunk, a policy that forbids Workers, a Worker that failed or stopped
//! answering), parts are hashed on the page as before.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ferry_core::ChecksumAlgorithm;
use ferry_core::sorted::SortedMap;
use futures_channel::oneshot;
use gloo_timers::callback::Timeout;
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

/// How long a part may take in the Worker before the page stops waiting and hashes it itself:
/// a base, and a rate far below the slowest hashing measured (100 MB/s).
const DEADLINE_BASE_MS: u64 = 10_000;
const DEADLINE_BYTES_PER_MS: u64 = 4_000;

/// The Worker and the parts it was asked for, shared with its event handlers.
struct Channel {
    worker: Worker,
    pending: RefCell<SortedMap<u32, oneshot::Sender<Answer>>>,
    broken: Cell<bool>,
}

impl Channel {
    /// Stops using the Worker: every part waiting on it, and every later one, is hashed on the
    /// page (dropping a part's sender tells its receiver).
    fn give_up(&self) {
        self.broken.set(true);
        self.worker.terminate();
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.set_onmessageerror(None);
        self.pending.borrow_mut().clear();
    }

    fn answer(&self, data: &JsValue) {
        let field = |name: &str| {
            js_sys::Reflect::get(data, &name.into())
                .ok()
                .and_then(|value| value.as_string())
        };
        let Some(id) = js_sys::Reflect::get(data, &"id".into())
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
            // The Worker's own failure (`broken`), or an answer it should not give.
            return self.give_up();
        };
        if let Some(sender) = self.pending.borrow_mut().remove(&(id as u32)) {
            let _ = sender.send(answer);
        }
    }
}

pub struct HashWorker {
    channel: Rc<Channel>,
    next_id: Cell<u32>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

thread_local! {
    static WORKER: std::cell::OnceCell<Option<HashWorker>> = const { std::cell::OnceCell::new() };
}

impl HashWorker {
    /// The checksum of `blob`'s bytes by the page's hashing Worker (started on first use), or
    /// why it could not read them; `None` where there is no Worker, or it failed or stopped
    /// answering, and the page must hash them itself.
    pub async fn checksum(blob: &Blob, len: u64, algorithm: ChecksumAlgorithm) -> Option<Answer> {
        let (receiver, deadline) = WORKER.with(|cell| {
            let worker = cell.get_or_init(Self::start).as_ref()?;
            worker.ask(blob, len, algorithm)
        })?;
        let answer = receiver.await.ok();
        drop(deadline);
        answer
    }

    fn start() -> Option<HashWorker> {
        let worker = start_hash_worker()?;
        // The page's compiled module: the Worker instantiates it without fetching it again.
        let init = js_sys::Object::new();
        let posted = js_sys::Reflect::set(&init, &"module".into(), &wasm_bindgen::module())
            .and_then(|_| worker.post_message(&init));
        if posted.is_err() {
            worker.terminate();
            return None;
        }
        let channel = Rc::new(Channel {
            worker,
            pending: RefCell::default(),
            broken: Cell::new(false),
        });
        let on_message = {
            let channel = channel.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                channel.answer(&event.data())
            })
        };
        // A script that did not load, or an error it did not catch.
        let on_error = {
            let channel = channel.clone();
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_| channel.give_up())
        };
        channel
            .worker
            .set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        channel
            .worker
            .set_onerror(Some(on_error.as_ref().unchecked_ref()));
        channel
            .worker
            .set_onmessageerror(Some(on_error.as_ref().unchecked_ref()));
        Some(HashWorker {
            channel,
            next_id: Cell::new(0),
            _on_message: on_message,
            _on_error: on_error,
        })
    }

    /// Posts `blob` (of `len` bytes) to the Worker: its answer to come, and the deadline past
    /// which the page gives up on the Worker (cancelled when dropped).
    fn ask(
        &self,
        blob: &Blob,
        len: u64,
        algorithm: ChecksumAlgorithm,
    ) -> Option<(oneshot::Receiver<Answer>, Timeout)> {
        if self.channel.broken.get() {
            return None;
        }
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let request = js_sys::Object::new();
        js_sys::Reflect::set(&request, &"id".into(), &id.into())
            .and_then(|_| js_sys::Reflect::set(&request, &"blob".into(), blob))
            .and_then(|_| {
                js_sys::Reflect::set(&request, &"algorithm".into(), &algorithm.name().into())
            })
            .and_then(|_| self.channel.worker.post_message(&request))
            .ok()?;
        let (sender, receiver) = oneshot::channel();
        self.channel.pending.borrow_mut().insert(id, sender);
        let ms = DEADLINE_BASE_MS + len / DEADLINE_BYTES_PER_MS;
        let channel = Rc::downgrade(&self.channel);
        let deadline = Timeout::new(u32::try_from(ms).unwrap_or(u32::MAX), move || {
            if let Some(channel) = channel.upgrade() {
                channel.give_up();
            }
        });
        Some((receiver, deadline))
    }
}
