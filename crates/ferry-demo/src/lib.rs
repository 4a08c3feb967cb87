//! The demo page: pick files, watch each one's progress and state, open the stored object.
//!
//! Tests find elements by `data-testid` and read state from `data-state`, never from wording.

use ferry_wasm::{Client, FileId, FileProgress, SchedulerView};
use leptos::prelude::*;
use leptos::task::spawn_local;
use web_sys::HtmlInputElement;

/// Where a file's upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowState {
    Uploading,
    Done,
    Failed,
}

impl RowState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// One picked file and what became of it.
#[derive(Debug, Clone)]
struct Row {
    id: usize,
    name: String,
    size: u64,
    sent: RwSignal<u64>,
    confirmed: RwSignal<u64>,
    state: RwSignal<RowState>,
    /// Where the companion serves the object, once stored.
    location: RwSignal<Option<String>>,
    error: RwSignal<Option<String>>,
    /// The scheduler's id, once the file is queued.
    upload: RwSignal<Option<FileId>>,
    paused: RwSignal<bool>,
    retries: RwSignal<u32>,
}

/// The companion's address: the page's own origin, unless `?companion=` names another.
fn companion_endpoint() -> String {
    web_sys::window()
        .and_then(|window| window.location().search().ok())
        .and_then(|search| web_sys::UrlSearchParams::new_with_str(&search).ok())
        .and_then(|params| params.get("companion"))
        .unwrap_or_default()
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let client = StoredValue::new_local(Client::new(&companion_endpoint()));
    let rows = RwSignal::new(Vec::<Row>::new());
    let next_id = StoredValue::new(0usize);

    let start = move |file: web_sys::File| {
        let id = next_id.get_value();
        next_id.set_value(id + 1);
        let row = Row {
            id,
            name: file.name(),
            size: file.size() as u64,
            sent: RwSignal::new(0),
            confirmed: RwSignal::new(0),
            state: RwSignal::new(RowState::Uploading),
            location: RwSignal::new(None),
            error: RwSignal::new(None),
            upload: RwSignal::new(None),
            paused: RwSignal::new(false),
            retries: RwSignal::new(0),
        };
        rows.update(|rows| rows.push(row.clone()));
        let client = client.get_value();
        spawn_local(async move {
            let on_progress = move |progress: FileProgress| {
                row.sent.set(progress.loaded());
                row.confirmed.set(progress.confirmed);
                row.retries.set(progress.retries);
            };
            let upload = async {
                let handle = client.add(file, 0, on_progress).await?;
                row.upload.set(Some(handle.id));
                handle.done().await
            };
            match upload.await {
                Ok(object) => {
                    row.sent.set(row.size);
                    row.confirmed.set(row.size);
                    row.location.set(Some(object.location));
                    row.state.set(RowState::Done);
                }
                Err(error) => {
                    row.error.set(Some(format!("{} ({})", error, error.code())));
                    row.state.set(RowState::Failed);
                }
            }
        });
    };

    // The scheduler panel reads the engine after every change a row sees.
    let scheduler = RwSignal::new(SchedulerView::default());
    Effect::new(move || {
        for row in rows.get() {
            row.sent.track();
            row.state.track();
        }
        scheduler.set(client.get_value().scheduler());
    });

    let on_change = move |event: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&event);
        if let Some(files) = input.files() {
            for index in 0..files.length() {
                if let Some(file) = files.item(index) {
                    start(file);
                }
            }
        }
        // Let the same file be picked again.
        input.set_value("");
    };

    view! {
        <main>
            <h1>"Ferry"</h1>
            <p class="lede">"Files go from this page straight to the store, in parts, through one scheduler."</p>
            <label class="picker">
                "Choose files"
                <input type="file" multiple data-testid="file-input" on:change=on_change />
            </label>
            <section class="scheduler" data-testid="scheduler" aria-label="Scheduler">
                <span data-testid="slots">{move || format!("{} / {} slots busy", scheduler.get().running, scheduler.get().slots)}</span>
                <span data-testid="live">{move || format!("{} files prepared", scheduler.get().live)}</span>
                <span data-testid="queued">{move || format!("{} queued", scheduler.get().queued)}</span>
                <span>{move || format!("{} part PUTs, {} companion calls", scheduler.get().puts, scheduler.get().companion_calls)}</span>
                <button data-testid="pause-all" on:click=move |_| client.get_value().pause_all()>"Pause all"</button>
                <button data-testid="resume-all" on:click=move |_| client.get_value().resume_all()>"Resume all"</button>
                <button data-testid="cancel-all" on:click=move |_| client.get_value().cancel_all()>"Cancel all"</button>
            </section>
            <ul class="files" data-testid="file-list">
                <For each=move || rows.get() key=|row| row.id let:row>
                    <FileRow row=row client=client />
                </For>
            </ul>
        </main>
    }
}

/// A file's name, size, progress bar, state, and link or error.
#[component]
fn FileRow(
    /// The file and its signals.
    row: Row,
    /// The client that uploads it, for pause, resume and cancel.
    client: StoredValue<Client, LocalStorage>,
) -> impl IntoView {
    let uploading = move || row.state.get() == RowState::Uploading && row.upload.get().is_some();
    let toggle_pause = move |_| {
        let Some(id) = row.upload.get_untracked() else {
            return;
        };
        if row.paused.get_untracked() {
            client.get_value().resume(id);
        } else {
            client.get_value().pause(id);
        }
        row.paused.update(|paused| *paused = !*paused);
    };
    let cancel = move |_| {
        if let Some(id) = row.upload.get_untracked() {
            client.get_value().cancel(id);
        }
    };
    let size = row.size;
    let percent = move || {
        if size == 0 {
            if row.state.get() == RowState::Done {
                100.0
            } else {
                0.0
            }
        } else {
            row.sent.get() as f64 * 100.0 / size as f64
        }
    };
    let confirmed_percent = move || {
        if size == 0 {
            percent()
        } else {
            row.confirmed.get() as f64 * 100.0 / size as f64
        }
    };
    view! {
        <li
            class="file"
            data-testid="file-row"
            data-name=row.name.clone()
            data-state=move || row.state.get().as_str()
            data-retries=move || row.retries.get().to_string()
        >
            <span class="name">{row.name.clone()}</span>
            <span class="size">{human_size(row.size)}</span>
            <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=move || format!("{:.0}", percent())>
                <div class="sent" style:width=move || format!("{:.1}%", percent())></div>
                <div class="confirmed" style:width=move || format!("{:.1}%", confirmed_percent())></div>
            </div>
            <span class="state" data-testid="file-state" data-state=move || row.state.get().as_str()>
                {move || row.state.get().as_str()}
            </span>
            <span class="controls">
                <button data-testid="pause" disabled=move || !uploading() on:click=toggle_pause>
                    {move || if row.paused.get() { "Resume" } else { "Pause" }}
                </button>
                <button data-testid="cancel" disabled=move || !uploading() on:click=cancel>"Cancel"</button>
            </span>
            {move || row.location.get().map(|href| view! { <a data-testid="file-link" href=href target="_blank">"open"</a> })}
            {move || row.error.get().map(|message| view! { <p class="error" data-testid="file-error" role="alert">{message}</p> })}
        </li>
    }
}
