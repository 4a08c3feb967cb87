//! The demo page: drop or pick files, watch each one's progress, speed and state, steer them, and
//! watch the scheduler itself: its slots, its queue, its events and its throughput.
//!
//! Tests find elements by `data-testid` and read state from `data-*` attributes, never from
//! wording.

mod lanes;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use lanes::{LaneChart, Lanes};

use ferry_wasm::leptos::use_upload;
use ferry_wasm::{
    Client, ClientEvent, EngineConfig, FileId, FileState, FixedSlots, Rate, SchedulerView,
};
use leptos::prelude::*;
use web_sys::HtmlInputElement;

/// How often speeds, the scheduler view and the chart are refreshed.
const TICK: Duration = Duration::from_millis(250);
/// Points kept in the throughput chart.
const CHART_POINTS: usize = 120;
/// Events kept in the timeline.
const TIMELINE_LENGTH: usize = 40;
/// Files shown in the queue lists.
const QUEUE_SHOWN: usize = 8;
/// Above this many rows, only the rows in view are rendered (each is a fixed height).
const WINDOWED_OVER: usize = 200;
/// A windowed row's height in pixels, as the stylesheet sets it.
const ROW_HEIGHT: f64 = 84.0;
/// Height of the windowed list in pixels.
const LIST_HEIGHT: f64 = 640.0;
/// Rows rendered above and below the visible ones.
const OVERSCAN: usize = 6;
/// When many files are picked at once, each task adds as many as fit in about this many
/// milliseconds, the DOM updates of their rows included: a long task is a page that does not
/// answer.
const ADD_TASK_MS: f64 = 8.0;
/// Files the first of those tasks adds, before the page has measured what one costs.
const FIRST_ADD_CHUNK: usize = 10;

/// Resolves in a later task, letting the browser render and handle input in between.
async fn next_task() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback(&resolve);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Resolves once the reactive work already woken (effects that render) has run.
async fn rendered() {
    let resolved = js_sys::Promise::resolve(&wasm_bindgen::JsValue::UNDEFINED);
    let _ = wasm_bindgen_futures::JsFuture::from(resolved).await;
}

/// How many files the next adding task takes, from what the last `count` cost in `took_ms`.
fn next_add_chunk(count: usize, took_ms: f64) -> usize {
    let per_file = took_ms.max(1.0) / count.max(1) as f64;
    ((ADD_TASK_MS / per_file) as usize).clamp(1, 4 * count.max(1))
}

/// Where a file's upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowState {
    Queued,
    Uploading,
    Paused,
    Done,
    Failed,
}

impl RowState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Uploading => "uploading",
            Self::Paused => "paused",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Uploading | Self::Paused)
    }
}

/// One picked file and what became of it.
#[derive(Clone)]
struct Row {
    id: usize,
    name: String,
    size: u64,
    file: StoredValue<web_sys::File, LocalStorage>,
    /// The client that uploads it (settings apply to new uploads only), and which one it is:
    /// the timeline names files by client and the engine's id.
    client: StoredValue<Client, LocalStorage>,
    generation: usize,
    preview: Option<(String, bool)>,
    sent: RwSignal<u64>,
    confirmed: RwSignal<u64>,
    /// Speed and time left, as the client measures them.
    rate: RwSignal<Rate>,
    state: RwSignal<RowState>,
    retries: RwSignal<u32>,
    fallback: RwSignal<bool>,
    /// Waiting out an outage of the store or the companion.
    waiting: RwSignal<bool>,
    location: RwSignal<Option<String>>,
    etag: RwSignal<Option<String>>,
    error: RwSignal<Option<String>>,
    /// The error's stable code (`TooLarge`, `Cancelled`, the store's S3 code...).
    error_code: RwSignal<Option<String>>,
    upload: RwSignal<Option<FileId>>,
    /// When its first bytes went out, and when it was stored (page seconds).
    started: RwSignal<Option<f64>>,
    finished: RwSignal<Option<f64>>,
    /// Its object's key, once stored.
    key: RwSignal<Option<String>>,
}

/// Settings applied to new uploads.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Settings {
    part_size_mib: u64,
    /// 0 means the seeds' rule (5, or 3 with a file over 65 MiB).
    slots: usize,
    triggers: usize,
    retry_delay_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            part_size_mib: 0,
            slots: 0,
            triggers: 10,
            retry_delay_ms: 1000,
        }
    }
}

impl Settings {
    fn client(&self) -> Client {
        let mut config = EngineConfig {
            triggers: self.triggers.max(1),
            ..EngineConfig::default()
        };
        if self.slots > 0 {
            config.slot_rule = Arc::new(FixedSlots(self.slots));
        }
        config.retry.base_delay = Duration::from_millis(self.retry_delay_ms);
        config.part_size = (self.part_size_mib > 0).then(|| self.part_size_mib * 1024 * 1024);
        // Slots or a part size chosen on the page are kept as they are.
        if self.slots > 0 || config.part_size.is_some() {
            config.adapt = None;
        }
        Client::with_config(&companion_endpoint(), config)
    }
}

/// The companion's address: the page's own origin, unless `?companion=` names another.
fn companion_endpoint() -> String {
    web_sys::window()
        .and_then(|window| window.location().search().ok())
        .and_then(|search| web_sys::UrlSearchParams::new_with_str(&search).ok())
        .and_then(|params| params.get("companion"))
        .unwrap_or_default()
}

/// The page's clock, in seconds.
fn page_seconds() -> f64 {
    js_sys::Date::now() / 1000.0
}

fn human_size(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn eta(rate: Rate, finished: bool) -> String {
    if finished {
        return "—".into();
    }
    let Some(secs) = rate.eta_secs else {
        return "…".into();
    };
    let secs = secs.ceil() as u64;
    if secs >= 3600 {
        format!("{}h {:02}m", secs / 3600, secs / 60 % 60)
    } else {
        format!("{}m {:02}s", secs / 60, secs % 60)
    }
}

/// A preview URL for images and videos, made in the page.
fn preview(file: &web_sys::File) -> Option<(String, bool)> {
    let kind = file.type_();
    let video = kind.starts_with("video/");
    (kind.starts_with("image/") || video)
        .then(|| {
            web_sys::Url::create_object_url_with_blob(file)
                .ok()
                .map(|url| (url, video))
        })
        .flatten()
}

/// Starts (or starts again) the upload of a row.
fn run_upload(row: Row, timeline: Timeline) {
    row.state.set(RowState::Queued);
    row.error.set(None);
    row.error_code.set(None);
    row.sent.set(0);
    row.confirmed.set(0);
    row.started.set(None);
    row.finished.set(None);
    let upload = use_upload(&row.client.get_value(), row.file.get_value(), 0);
    if let Some(id) = upload.id.get_untracked() {
        timeline.named(row.generation, id, &row.name);
    }
    Effect::new(move || {
        row.upload.set(upload.id.get());
        if let Some(progress) = upload.progress.get() {
            row.rate.set(upload.rate.get());
            row.sent.set(progress.loaded());
            row.confirmed.set(progress.confirmed);
            row.retries.set(progress.retries);
            row.fallback.set(progress.fallback);
            row.waiting.set(progress.waiting);
            let state = match progress.state {
                FileState::Queued => RowState::Queued,
                _ if progress.paused => RowState::Paused,
                _ => RowState::Uploading,
            };
            if row.state.get_untracked().is_active() {
                row.state.set(state);
            }
            if state == RowState::Uploading && row.started.get_untracked().is_none() {
                row.started.set(Some(page_seconds()));
            }
        }
    });
    Effect::new(move || match upload.outcome.get() {
        Some(Ok(object)) => {
            row.sent.set(row.size);
            row.confirmed.set(row.size);
            row.etag.set(Some(object.etag.trim_matches('"').to_owned()));
            row.location.set(Some(object.location));
            row.key.set(Some(object.key));
            let now = page_seconds();
            row.finished.set(Some(now));
            if row.started.get_untracked().is_none() {
                row.started.set(Some(now));
            }
            row.state.set(RowState::Done);
            timeline.file_ended(&row.name, None);
        }
        Some(Err(error)) => {
            row.error.set(Some(format!("{} ({})", error, error.code())));
            row.error_code.set(Some(error.code().to_owned()));
            row.state.set(RowState::Failed);
            timeline.file_ended(&row.name, Some(error.code()));
        }
        None => {}
    });
}

/// One line of the timeline: what happened (`kind`, for tests and styles) to which file.
#[derive(Debug, Clone)]
struct Entry {
    /// Grows with every entry: the timeline's key, so a new entry adds one element.
    seq: u64,
    kind: &'static str,
    name: String,
    line: String,
}

/// The event timeline. With many files (`quiet`), files stored or failed are tallied and told
/// once a tick, and parts not at all: one line per file would redraw it thousands of times.
#[derive(Clone, Copy)]
struct Timeline {
    entries: RwSignal<VecDeque<Entry>>,
    /// File names by client generation and the engine's id.
    names: StoredValue<HashMap<(usize, u64), String>>,
    quiet: StoredValue<bool>,
    /// Files stored and failed since the last tick, while quiet.
    tally: StoredValue<[usize; 2]>,
}

impl Timeline {
    fn new() -> Self {
        Self {
            entries: RwSignal::new(VecDeque::new()),
            names: StoredValue::new(HashMap::new()),
            quiet: StoredValue::new(false),
            tally: StoredValue::new([0, 0]),
        }
    }

    fn named(self, generation: usize, id: FileId, name: &str) {
        self.names.update_value(|names| {
            names.insert((generation, id.0), name.to_owned());
        });
    }

    fn name_of(self, generation: usize, id: FileId) -> String {
        self.names
            .with_value(|names| names.get(&(generation, id.0)).cloned())
            .unwrap_or_default()
    }

    /// A file was stored (`failed` is `None`) or failed.
    fn file_ended(self, name: &str, failed: Option<&str>) {
        if self.quiet.get_value() {
            self.tally
                .update_value(|tally| tally[usize::from(failed.is_some())] += 1);
            return;
        }
        match failed {
            None => log(self, "stored", name, format!("{name} stored")),
            Some(code) => log(self, "failed", name, format!("{name} failed: {code}")),
        }
    }

    /// Tells the tally of a quiet tick.
    fn flush(self) {
        let [stored, failed] = self.tally.get_value();
        self.tally.set_value([0, 0]);
        if stored > 0 {
            log(self, "stored", "", format!("{stored} files stored"));
        }
        if failed > 0 {
            log(self, "failed", "", format!("{failed} files failed"));
        }
    }
}

fn log(timeline: Timeline, kind: &'static str, name: &str, text: String) {
    let stamp = String::from(js_sys::Date::new_0().to_locale_time_string("en-GB"));
    let seq = timeline
        .entries
        .with_untracked(|entries| entries.front().map_or(0, |entry| entry.seq + 1));
    let entry = Entry {
        seq,
        kind,
        name: name.to_owned(),
        line: format!("{stamp} {text}"),
    };
    timeline.entries.update(|entries| {
        entries.push_front(entry);
        entries.truncate(TIMELINE_LENGTH);
    });
}

/// The totals line, counted on each tick rather than on every progress event of every row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    size: u64,
    confirmed: u64,
    sent: u64,
    done: usize,
    count: usize,
}

impl Totals {
    fn of(rows: &[Row]) -> Self {
        let mut totals = Totals {
            count: rows.len(),
            ..Totals::default()
        };
        for row in rows {
            totals.size += row.size;
            totals.confirmed += row.confirmed.get_untracked();
            totals.sent += row.sent.get_untracked();
            totals.done += usize::from(row.state.get_untracked() == RowState::Done);
        }
        totals
    }
}

/// The next files in line, and how many wait in all.
#[derive(Debug, Clone, Default, PartialEq)]
struct QueueView {
    next: Vec<String>,
    waiting: usize,
}

/// The queue as a list of the next files.
#[component]
fn QueueList(
    queue: RwSignal<QueueView>,
    /// For tests: `queue-list` or `sim-queue`.
    testid: &'static str,
) -> impl IntoView {
    view! {
        <div class="queue">
            <h3>"Next in line"</h3>
            <ol data-testid=testid data-waiting=move || queue.get().waiting.to_string()>
                {move || {
                    let queue = queue.get();
                    let more = queue.waiting.saturating_sub(queue.next.len());
                    let names = queue.next.into_iter().map(|name| { let label = name.clone(); view! { <li data-name=name>{label}</li> } }).collect_view();
                    (names, (more > 0).then(|| view! { <li class="more">{format!("and {more} more")}</li> }))
                }}
            </ol>
            {move || (queue.get().waiting == 0).then(|| view! { <p class="empty">"The queue is empty."</p> })}
        </div>
    }
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let settings = RwSignal::new(Settings::default());
    let timeline = Timeline::new();
    let rows = RwSignal::new(Vec::<Row>::new());
    let next_id = StoredValue::new(0usize);
    let client = StoredValue::new_local(settings.get_untracked().client());
    let watch = move |client: &Client, generation: usize| {
        let name_of = move |id: FileId| timeline.name_of(generation, id);
        client.on_event(move |event| match event {
            ClientEvent::Part { .. } if timeline.quiet.get_value() => {}
            ClientEvent::Part { id, part, .. } => {
                let name = name_of(*id);
                log(
                    timeline,
                    "part",
                    &name,
                    format!("{name}: part {part} stored"),
                );
            }
            ClientEvent::Retry { id, retries } => {
                let name = name_of(*id);
                log(timeline, "retry", &name, format!("{name}: retry {retries}"));
            }
            ClientEvent::Resumed { id, parts_kept } => {
                let name = name_of(*id);
                log(
                    timeline,
                    "resumed",
                    &name,
                    format!("{name}: resumed with {parts_kept} parts already stored"),
                );
            }
            ClientEvent::Waiting { id, waiting } => {
                let name = name_of(*id);
                let (kind, what) = if *waiting {
                    ("waiting", "no answer: waiting, spending no retries")
                } else {
                    ("going-on", "answered again: going on")
                };
                log(timeline, kind, &name, format!("{name}: {what}"));
            }
            ClientEvent::Joined { id, .. } => {
                let name = name_of(*id);
                log(
                    timeline,
                    "joined",
                    &name,
                    format!("{name}: already on its way, sharing that upload"),
                );
            }
            _ => {}
        });
    };
    let generation = StoredValue::new(0usize);
    client.with_value(|client| watch(client, 0));
    // New settings make a new client; uploads already running keep theirs.
    Effect::new(move |previous: Option<Settings>| {
        let current = settings.get();
        if previous.is_some_and(|previous| previous != current) {
            let fresh = current.client();
            generation.update_value(|generation| *generation += 1);
            watch(&fresh, generation.get_value());
            client.set_value(fresh);
            log(
                timeline,
                "settings",
                "",
                "settings applied to new uploads".into(),
            );
        }
        current
    });

    // A batch becomes rows in one update and one timeline line: thousands of files dropped at
    // once must not re-render the list or the timeline once per file.
    let add_chunk = move |files: Vec<web_sys::File>| {
        let mut added = Vec::new();
        for file in files {
            let id = next_id.get_value();
            next_id.set_value(id + 1);
            added.push(Row {
                id,
                name: file.name(),
                size: file.size() as u64,
                preview: preview(&file),
                file: StoredValue::new_local(file),
                client: StoredValue::new_local(client.get_value()),
                generation: generation.get_value(),
                sent: RwSignal::new(0),
                confirmed: RwSignal::new(0),
                rate: RwSignal::new(Rate::default()),
                state: RwSignal::new(RowState::Queued),
                retries: RwSignal::new(0),
                fallback: RwSignal::new(false),
                waiting: RwSignal::new(false),
                location: RwSignal::new(None),
                etag: RwSignal::new(None),
                error: RwSignal::new(None),
                error_code: RwSignal::new(None),
                upload: RwSignal::new(None),
                started: RwSignal::new(None),
                finished: RwSignal::new(None),
                key: RwSignal::new(None),
            });
        }
        rows.update(|rows| rows.extend(added.iter().cloned()));
        timeline
            .quiet
            .set_value(rows.with_untracked(|rows| rows.len() > WINDOWED_OVER));
        for row in added {
            run_upload(row, timeline);
        }
    };
    // Reading a picked file's name and size asks the browser about it: thousands of files are
    // added a chunk per task, so the page never blocks for long.
    let add_files = move |list: web_sys::FileList| {
        let files: Vec<web_sys::File> = (0..list.length())
            .filter_map(|index| list.item(index))
            .collect();
        match files.as_slice() {
            [] => return,
            [file] => log(
                timeline,
                "added",
                &file.name(),
                format!("{} added", file.name()),
            ),
            many => log(timeline, "added", "", format!("{} files added", many.len())),
        }
        // Each chunk in a task of its own, the first included: the `change` event's task is
        // already the browser's long one of building the FileList. Chunks follow the measured
        // cost of a row, so a slow machine adds fewer per task instead of blocking longer.
        wasm_bindgen_futures::spawn_local(async move {
            let mut files = files.into_iter().peekable();
            let mut chunk = FIRST_ADD_CHUNK;
            while files.peek().is_some() {
                next_task().await;
                let started = js_sys::Date::now();
                let taken: Vec<_> = files.by_ref().take(chunk).collect();
                let count = taken.len();
                add_chunk(taken);
                rendered().await;
                chunk = next_add_chunk(count, js_sys::Date::now() - started);
            }
        });
    };

    // Speeds, the scheduler view and the throughput chart, refreshed on a tick.
    let scheduler = RwSignal::new(SchedulerView::default());
    let slots_in_use = RwSignal::new(Vec::<(String, u32, f64)>::new());
    let throughput = RwSignal::new(VecDeque::<f64>::new());
    let lanes = RwSignal::new(Lanes::default());
    // The client the lanes draw: new settings make a new client, whose ids start again.
    let lanes_generation = StoredValue::new(0usize);
    let queue = RwSignal::new(QueueView::default());
    let totals = RwSignal::new(Totals::default());
    let tick = move || {
        let name_of = |id: FileId| timeline.name_of(generation.get_value(), id);
        let current = client.get_value();
        let view = current.scheduler();
        if lanes_generation.get_value() != generation.get_value() {
            lanes_generation.set_value(generation.get_value());
            lanes.set(Lanes::default());
        }
        lanes.update(|lanes| {
            lanes.sample(
                page_seconds(),
                current.preparing(),
                current.running_parts(),
                view.slots,
                name_of,
            )
        });
        queue.set(QueueView {
            next: current
                .next_in_line(QUEUE_SHOWN)
                .into_iter()
                .map(name_of)
                .collect(),
            waiting: view.queued,
        });
        totals.set(rows.with_untracked(|rows| Totals::of(rows)));
        timeline.flush();
        throughput.update(|points| {
            points.push_back(view.rate.bytes_per_sec);
            while points.len() > CHART_POINTS {
                points.pop_front();
            }
        });
        scheduler.set(view);
        let parts = current
            .running_parts()
            .into_iter()
            .map(|part| {
                (
                    name_of(part.file),
                    part.part,
                    part.sent as f64 * 100.0 / part.size.max(1) as f64,
                )
            })
            .collect();
        slots_in_use.set(parts);
    };
    let interval = set_interval_with_handle(tick, TICK).ok();
    on_cleanup(move || {
        if let Some(interval) = interval {
            interval.clear();
        }
    });

    let on_change = move |event: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&event);
        if let Some(files) = input.files() {
            add_files(files);
        }
        // Let the same file be picked again.
        input.set_value("");
    };
    let dragging = RwSignal::new(false);
    let on_drop = move |event: leptos::ev::DragEvent| {
        event.prevent_default();
        dragging.set(false);
        if let Some(files) = event.data_transfer().and_then(|transfer| transfer.files()) {
            add_files(files);
        }
    };
    let unfinished: Vec<String> = Client::unfinished()
        .into_iter()
        .map(|entry| entry.name)
        .collect();

    // Rows in view, when there are too many to render them all.
    let scroll_top = RwSignal::new(0.0f64);
    let windowed = move || rows.with(|rows| rows.len() > WINDOWED_OVER);
    let visible = Memo::new(move |_| {
        let count = rows.with(|rows| rows.len());
        if count <= WINDOWED_OVER {
            return (0, count);
        }
        let first = ((scroll_top.get() / ROW_HEIGHT) as usize).saturating_sub(OVERSCAN);
        let shown = (LIST_HEIGHT / ROW_HEIGHT).ceil() as usize + 2 * OVERSCAN;
        (first.min(count), (first + shown).min(count))
    });
    let padding = move |above: bool| {
        let (first, end) = visible.get();
        let count = rows.with(|rows| rows.len());
        let hidden = if above { first } else { count - end };
        format!("{}px", hidden as f64 * ROW_HEIGHT)
    };

    view! {
        <main>
            <header>
                <h1>"Ferry"</h1>
                <p class="lede">"Files go from this page straight to the store, in parts, through one scheduler."</p>
            </header>
            {(!unfinished.is_empty()).then(|| view! {
                <p class="banner" data-testid="resume-banner" role="status">
                    "Unfinished uploads from an earlier visit: "
                    {unfinished.iter().map(|name| view! { <span data-testid="unfinished" data-name=name.clone()>{name.clone()}" "</span> }).collect_view()}
                    ". Select the same files again to continue where they stopped."
                </p>
            })}
            <label
                class="drop"
                class:dragging=move || dragging.get()
                data-testid="drop-zone"
                on:dragover=move |event: leptos::ev::DragEvent| { event.prevent_default(); dragging.set(true); }
                on:dragleave=move |_| dragging.set(false)
                on:drop=on_drop
            >
                <span>"Drop files here, or choose them"</span>
                <input type="file" multiple data-testid="file-input" on:change=on_change />
            </label>

            <section class="totals" aria-label="Totals">
                {move || {
                    let Totals { size, confirmed, sent, done, count } = totals.get();
                    let share = |bytes: u64| if size == 0 { 0.0 } else { bytes as f64 * 100.0 / size as f64 };
                    view! {
                        <div class="bar" data-testid="total-bar" data-confirmed=confirmed.to_string() data-total=size.to_string()
                            data-done=done.to_string() data-count=count.to_string()
                            role="progressbar" aria-label="All files" aria-valuemin="0" aria-valuemax="100" aria-valuenow=format!("{:.0}", share(sent))>
                            <div class="sent" style:width=format!("{:.1}%", share(sent))></div>
                            <div class="confirmed" style:width=format!("{:.1}%", share(confirmed))></div>
                        </div>
                        <p data-testid="totals">{format!("{done} of {count} files, {} of {} stored", human_size(confirmed as f64), human_size(size as f64))}</p>
                    }
                }}
                <div class="controls">
                    <button data-testid="pause-all" on:click=move |_| { for row in rows.get_untracked() { row.client.get_value().pause_all(); } }>"Pause all"</button>
                    <button data-testid="resume-all" on:click=move |_| { for row in rows.get_untracked() { row.client.get_value().resume_all(); } }>"Resume all"</button>
                    <button data-testid="cancel-all" on:click=move |_| { for row in rows.get_untracked() { row.client.get_value().cancel_all(); } }>"Cancel all"</button>
                </div>
            </section>

            <ul class="files" class:windowed=windowed data-testid="file-list" aria-label="Files"
                on:scroll=move |event| scroll_top.set(event_target::<web_sys::Element>(&event).scroll_top() as f64)>
                {move || windowed().then(|| view! { <li class="spacer" aria-hidden="true" style:height=move || padding(true)></li> })}
                <For each=move || { let (first, end) = visible.get(); rows.with(|rows| rows[first..end].to_vec()) } key=|row| row.id let:row>
                    <FileRow row=row timeline=timeline />
                </For>
                {move || windowed().then(|| view! { <li class="spacer" aria-hidden="true" style:height=move || padding(false)></li> })}
            </ul>

            <div class="panels">
                <SchedulerPanel scheduler=scheduler slots=slots_in_use throughput=throughput timeline=timeline lanes=lanes queue=queue />
                <SettingsPanel settings=settings />
            </div>
            <SimulationPanel />
        </main>
    }
}

/// The settings applied to uploads added after a change.
#[component]
fn SettingsPanel(
    /// The settings, shared with the page.
    settings: RwSignal<Settings>,
) -> impl IntoView {
    let number = |event: &leptos::ev::Event| event_target_value(event).parse::<u64>().unwrap_or(0);
    view! {
        <section class="panel" data-testid="settings" aria-label="Settings">
            <h2>"Settings for new uploads"</h2>
            <label>"Preferred part size (MiB, 0 = companion's)"
                <input type="number" min="0" data-testid="setting-part-size" prop:value=move || settings.get().part_size_mib
                    on:change=move |event| settings.update(|s| s.part_size_mib = number(&event)) />
            </label>
            <label>"Slots (0 = 5, or 3 with a file over 65 MiB)"
                <input type="number" min="0" max="32" data-testid="setting-slots" prop:value=move || settings.get().slots
                    on:change=move |event| settings.update(|s| s.slots = number(&event) as usize) />
            </label>
            <label>"Files prepared ahead (triggers)"
                <input type="number" min="1" max="100" data-testid="setting-triggers" prop:value=move || settings.get().triggers
                    on:change=move |event| settings.update(|s| s.triggers = number(&event).max(1) as usize) />
            </label>
            <label>"First retry delay (ms, then doubled)"
                <input type="number" min="0" step="100" data-testid="setting-retry-delay" prop:value=move || settings.get().retry_delay_ms
                    on:change=move |event| settings.update(|s| s.retry_delay_ms = number(&event)) />
            </label>
        </section>
    }
}

/// The scheduler at work: slots, queue, statistics, throughput and events.
#[component]
fn SchedulerPanel(
    /// Counters and sizes of the two layers.
    scheduler: RwSignal<SchedulerView>,
    /// The running parts: file name, part number, percent sent.
    slots: RwSignal<Vec<(String, u32, f64)>>,
    /// Bytes per second, oldest first.
    throughput: RwSignal<VecDeque<f64>>,
    /// Newest first.
    timeline: Timeline,
    /// The two layers over time.
    lanes: RwSignal<Lanes>,
    /// The next files in line.
    queue: RwSignal<QueueView>,
) -> impl IntoView {
    let chart = move || {
        let points = throughput.get();
        let peak = points.iter().copied().fold(1.0, f64::max);
        let line = points
            .iter()
            .enumerate()
            .map(|(index, value)| {
                format!(
                    "{:.1},{:.1}",
                    index as f64 * 300.0 / CHART_POINTS as f64,
                    80.0 - value * 76.0 / peak
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        (
            line,
            human_size(points.back().copied().unwrap_or(0.0)),
            human_size(peak),
        )
    };
    view! {
        <section class="panel" data-testid="scheduler" aria-label="Scheduler">
            <h2>"Scheduler"</h2>
            <div class="slots" data-testid="slot-grid" aria-label="Bandwidth slots">
                {move || {
                    let view = scheduler.get();
                    let running = slots.get();
                    (0..view.slots.max(running.len()))
                        .map(|index| match running.get(index) {
                            Some((name, part, percent)) => view! {
                                <div class="slot busy" data-testid="slot" data-busy="true" title=format!("{name}, part {part}")>
                                    <span>{format!("{name} #{part}")}</span>
                                    <div class="fill" style:width=format!("{percent:.0}%")></div>
                                </div>
                            }.into_any(),
                            None => view! { <div class="slot" data-testid="slot" data-busy="false"><span>"idle"</span></div> }.into_any(),
                        })
                        .collect_view()
                }}
            </div>
            <LaneChart lanes=lanes testid="scheduler-lanes" />
            <QueueList queue=queue testid="queue-list" />
            <dl class="stats">
                <dt>"Slots busy"</dt><dd data-testid="slots" data-running=move || scheduler.get().running.to_string() data-slots=move || scheduler.get().slots.to_string()>{move || format!("{} / {}", scheduler.get().running, scheduler.get().slots)}</dd>
                <dt>"Files prepared"</dt><dd data-testid="live">{move || scheduler.get().live}</dd>
                <dt>"Queued"</dt><dd data-testid="queued">{move || scheduler.get().queued}</dd>
                <dt>"Part PUTs"</dt><dd data-testid="puts">{move || scheduler.get().puts}</dd>
                <dt>"Companion calls"</dt><dd data-testid="companion-calls">{move || scheduler.get().companion_calls}</dd>
                <dt>"Retries"</dt><dd data-testid="retries">{move || scheduler.get().retries}</dd>
            </dl>
            <figure>
                <svg viewBox="0 0 300 80" class="chart" data-testid="throughput-chart" role="img" aria-label="Throughput over time">
                    <polyline points=move || chart().0 />
                </svg>
                <figcaption>{move || { let (_, now, peak) = chart(); format!("{now}/s now, peak {peak}/s") }}</figcaption>
            </figure>
            <h3>"Events"</h3>
            <ol class="timeline" data-testid="timeline" aria-live="polite">
                <For each=move || timeline.entries.get() key=|entry| entry.seq let:entry>
                    <li data-kind=entry.kind data-name=entry.name>{entry.line}</li>
                </For>
            </ol>
        </section>
    }
}

/// A file's preview, name, size, progress, speed, ETA, state, retries and controls.
#[component]
fn FileRow(
    /// The file and its signals.
    row: Row,
    /// Where the row's events are logged.
    timeline: Timeline,
) -> impl IntoView {
    let size = row.size;
    let share = move |bytes: u64| {
        if size == 0 {
            if row.state.get() == RowState::Done {
                100.0
            } else {
                0.0
            }
        } else {
            bytes as f64 * 100.0 / size as f64
        }
    };
    let running = move || {
        matches!(row.state.get(), RowState::Uploading | RowState::Queued)
            && row.upload.get().is_some()
    };
    let toggle_pause = move |_| {
        let Some(id) = row.upload.get_untracked() else {
            return;
        };
        let client = row.client.get_value();
        if row.state.get_untracked() == RowState::Paused {
            client.resume(id);
            row.state.set(RowState::Uploading);
        } else {
            client.pause(id);
            row.state.set(RowState::Paused);
        }
    };
    let cancel = move |_| {
        if let Some(id) = row.upload.get_untracked() {
            row.client.get_value().cancel(id);
        }
    };
    let retry_row = row.clone();
    let stored_row = row.clone();
    let retry = move |_| run_upload(retry_row.clone(), timeline);
    let preview = row.preview.clone().map(|(url, video)| {
        if video {
            view! { <video class="thumb" data-testid="thumbnail" src=url muted=true preload="metadata" aria-hidden="true"></video> }.into_any()
        } else {
            view! { <img class="thumb" data-testid="thumbnail" src=url alt="" /> }.into_any()
        }
    });
    view! {
        <li
            class="file"
            data-testid="file-row"
            data-name=row.name.clone()
            data-state=move || row.state.get().as_str()
            data-retries=move || row.retries.get().to_string()
            data-fallback=move || row.fallback.get().to_string()
            data-waiting=move || row.waiting.get().to_string()
            data-error-code=move || row.error_code.get()
            data-etag=move || row.etag.get()
        >
            <div class="preview">{preview}</div>
            <div class="about">
                <span class="name">{row.name.clone()}</span>
                <span class="size">{human_size(row.size as f64)}</span>
                <span class="state" data-testid="file-state" data-state=move || row.state.get().as_str()>{move || row.state.get().as_str()}</span>
            </div>
            <div class="bar" role="progressbar" aria-label=format!("{} progress", row.name) aria-valuemin="0" aria-valuemax="100"
                aria-valuenow=move || format!("{:.0}", share(row.sent.get()))>
                <div class="sent" style:width=move || format!("{:.1}%", share(row.sent.get()))></div>
                <div class="confirmed" style:width=move || format!("{:.1}%", share(row.confirmed.get()))></div>
            </div>
            <div class="numbers">
                <span data-testid="speed">{move || format!("{}/s", human_size(if row.state.get() == RowState::Uploading { row.rate.get().bytes_per_sec } else { 0.0 }))}</span>
                <span data-testid="eta">{move || format!("ETA {}", eta(row.rate.get(), row.state.get() == RowState::Done || row.confirmed.get() == size))}</span>
                <span>{move || format!("{} retries", row.retries.get())}</span>
                {move || row.fallback.get().then(|| view! { <span>"via companion"</span> })}
                {move || row.waiting.get().then(|| view! { <span data-testid="waiting">"waiting for the store to answer"</span> })}
            </div>
            <div class="controls">
                <button data-testid="pause" disabled=move || !(running() || row.state.get() == RowState::Paused) on:click=toggle_pause>
                    {move || if row.state.get() == RowState::Paused { "Resume" } else { "Pause" }}
                </button>
                <button data-testid="cancel" disabled=move || !row.state.get().is_active() || row.upload.get().is_none() on:click=cancel>"Cancel"</button>
                <button data-testid="retry" disabled=move || row.state.get() != RowState::Failed on:click=retry>"Retry"</button>
            </div>
            {move || stored_row.location.get().map(|href| {
                let row = &stored_row;
                let took = row.finished.get().zip(row.started.get()).map(|(end, start)| (end - start).max(0.001));
                view! {
                    <p class="stored">
                        <a data-testid="file-link" href=href.clone() target="_blank">"Download"</a>
                        {took.map(|seconds| {
                            let average = size as f64 / seconds;
                            view! {
                                <span
                                    data-testid="file-duration"
                                    data-seconds=format!("{seconds:.3}")
                                    data-bytes-per-second=format!("{average:.0}")
                                >
                                    {format!(" in {seconds:.1} s, {}/s average", human_size(average))}
                                </span>
                            }
                        })}
                        " ETag " <code data-testid="file-etag">{row.etag.get().unwrap_or_default()}</code>
                    </p>
                    {server_preview(row, &href)}
                }
            })}
            {move || row.error.get().map(|message| view! { <p class="error" data-testid="file-error" role="alert">{message}</p> })}
        </li>
    }
}

/// Tries of a server-made preview: the companion makes it after the upload, in its own time.
const PREVIEW_TRIES: u32 = 20;

/// The companion's preview of a stored image or video, when it makes them: asked for again
/// every second until it is there.
fn server_preview(row: &Row, location: &str) -> Option<impl IntoView + use<>> {
    let makes_previews = row.client.with_value(|client| {
        client
            .companion()
            .is_some_and(|companion| companion.previews)
    });
    let kind = row.file.with_value(|file| file.type_());
    if !makes_previews || !(kind.starts_with("image/") || kind.starts_with("video/")) {
        return None;
    }
    // `/api/files/{key}` (and its link's query, with auth on) → `/api/files/{key}/preview`.
    let (path, query) = location.split_once('?').unwrap_or((location, ""));
    let base = format!("{}{path}/preview?{query}", companion_endpoint());
    let attempt = RwSignal::new(0u32);
    let shown = RwSignal::new(false);
    let retry = move |_| {
        if attempt.get_untracked() < PREVIEW_TRIES {
            set_timeout(
                move || attempt.update(|tries| *tries += 1),
                Duration::from_secs(1),
            );
        }
    };
    Some(view! {
        <img class="server-preview" class:shown=move || shown.get() data-testid="server-preview" data-loaded=move || shown.get().to_string()
            alt="preview made by the companion" src=move || format!("{base}&try={}", attempt.get())
            on:load=move |_| shown.set(true) on:error=retry />
    })
}

/// What the simulated network shows on each tick.
#[derive(Debug, Clone, Default, PartialEq)]
struct SimulationView {
    virtual_secs: f64,
    done: usize,
    files: usize,
    slots: usize,
    running: Vec<(u64, u32, f64)>,
    live: usize,
    queued: usize,
    puts: u64,
    companion_calls: u64,
    finished: bool,
}

/// Sizes the seed's demo adds: small files of 10-30 MB, large ones up to 100 MB. A large file
/// starts just over the seeds' 65 MiB (68.2 MB), so each one turns the slot rule to 3 slots;
/// one of 65-68 MB would not, and the button would show nothing new.
const SMALL_FILES: std::ops::Range<u64> = 10_000_000..30_000_000;
const LARGE_FILES: std::ops::Range<u64> = 65 * 1024 * 1024 + 1..100_000_000;

/// The real engine driven by the simulator in the page: no store needed, speed from 0 to 10x.
/// Files are added as the seed's demo adds them (small, large, or a mixed batch), and the same
/// scheduler view as the real uploads' shows them: lanes, queue, slots.
#[component]
fn SimulationPanel() -> impl IntoView {
    let speed = RwSignal::new(1.0f64);
    let files = RwSignal::new(200usize);
    let view_state = RwSignal::new(None::<SimulationView>);
    let lanes = RwSignal::new(Lanes::default());
    let queue = RwSignal::new(QueueView::default());
    let simulation = StoredValue::new_local(None::<ferry_sim::Sim>);
    let rng = StoredValue::new_local(ferry_sim::Rng::new(js_sys::Date::now() as u64));
    let pick = move |range: std::ops::Range<u64>| {
        rng.try_update_value(|rng| range.start + rng.next_u64() % (range.end - range.start))
            .unwrap_or(range.start)
    };
    // Adds files to the running simulation, starting one if there is none.
    let add = move |sizes: Vec<u64>| {
        simulation.update_value(|sim| {
            let sim = sim.get_or_insert_with(|| {
                ferry_sim::Sim::new(
                    EngineConfig::default(),
                    ferry_sim::Link::default(),
                    ferry_sim::Faults::default(),
                )
            });
            for size in sizes {
                sim.add(size, 0);
            }
        });
    };
    let add_batch = move |_| {
        // Mostly small files, a few large ones: the slot rule shows both of its faces.
        let sizes = (0..files.get_untracked())
            .map(|index| {
                if index % 10 == 9 {
                    pick(LARGE_FILES)
                } else {
                    pick(SMALL_FILES) / 4
                }
            })
            .collect();
        add(sizes);
    };
    let reset = move |_| {
        simulation.set_value(None);
        view_state.set(None);
        lanes.set(Lanes::default());
        queue.set(QueueView::default());
    };
    let tick = move || {
        let step = TICK.as_secs_f64() * speed.get_untracked();
        let snapshot = simulation
            .try_update_value(|sim| {
                let sim = sim.as_mut()?;
                let target = sim.now() + step;
                let under_way = sim.run_until(target, &mut |_| {});
                let report = sim.report();
                let engine = &sim.engine;
                lanes.update(|lanes| {
                    lanes.sample(
                        sim.now(),
                        engine.preparing(),
                        engine.running_parts(),
                        engine.slots(),
                        |file| format!("file {}", file.0),
                    )
                });
                queue.set(QueueView {
                    next: engine
                        .next_in_line(QUEUE_SHOWN)
                        .into_iter()
                        .map(|file| {
                            let size = engine.progress(file).map_or(0, |progress| progress.size);
                            format!("file {} ({})", file.0, human_size(size as f64))
                        })
                        .collect(),
                    waiting: engine.queued_files(),
                });
                Some(SimulationView {
                    virtual_secs: sim.now(),
                    done: report.done,
                    files: report.done + report.failed + engine.unfinished(),
                    slots: engine.slots(),
                    running: engine
                        .running_parts()
                        .into_iter()
                        .map(|part| {
                            (
                                part.file.0,
                                part.part,
                                part.sent as f64 * 100.0 / part.size.max(1) as f64,
                            )
                        })
                        .collect(),
                    live: engine.live_files(),
                    queued: engine.queued_files(),
                    puts: report.puts,
                    companion_calls: report.companion_calls,
                    finished: !under_way,
                })
            })
            .flatten();
        if snapshot.is_some() {
            view_state.set(snapshot);
        }
    };
    let interval = set_interval_with_handle(tick, TICK).ok();
    on_cleanup(move || {
        if let Some(interval) = interval {
            interval.clear();
        }
    });
    view! {
        <section class="panel simulation" data-testid="simulation" aria-label="Simulated network">
            <h2>"Simulated network"</h2>
            <p>"The same engine, driven by the simulator in this page: a 100 Mbit/s link, 40 ms per request, no store."</p>
            <div class="sim-controls">
                <label>{move || format!("Speed {:.1}x", speed.get())}
                    <input type="range" min="0" max="10" step="0.5" data-testid="sim-speed" prop:value=move || speed.get()
                        on:input=move |event| speed.set(event_target_value(&event).parse().unwrap_or(1.0)) />
                </label>
                <button data-testid="sim-add-small" on:click=move |_| add(vec![pick(SMALL_FILES)])>"Add a small file (10–30 MB)"</button>
                <button data-testid="sim-add-large" on:click=move |_| add(vec![pick(LARGE_FILES)])>"Add a large file (65 MiB–100 MB)"</button>
                <label>"Batch of"
                    <input type="number" min="1" max="20000" data-testid="sim-files" prop:value=move || files.get()
                        on:change=move |event| files.set(event_target_value(&event).parse().unwrap_or(200)) />
                </label>
                <button data-testid="sim-start" on:click=add_batch>"Add the batch"</button>
                <button data-testid="sim-reset" on:click=reset>"Reset"</button>
            </div>
            {move || view_state.get().map(|view| view! {
                <p data-testid="sim-status" data-done=view.done.to_string() data-files=view.files.to_string()
                    data-virtual-seconds=format!("{:.2}", view.virtual_secs) data-finished=view.finished.to_string()
                    data-slots=view.slots.to_string()>
                    {format!("{:.1} virtual s: {} of {} files done, {} / {} slots busy, {} prepared, {} queued, {} PUTs, {} companion calls",
                        view.virtual_secs, view.done, view.files, view.running.len(), view.slots, view.live, view.queued, view.puts, view.companion_calls)}
                </p>
            })}
            <LaneChart lanes=lanes testid="sim-lanes" />
            <QueueList queue=queue testid="sim-queue" />
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each button shows its face of the seeds' slot rule: any large file, even the smallest the
    /// button can pick, turns it to 3 slots; any small file, even the largest, leaves 5.
    #[test]
    fn the_simulations_large_files_turn_the_slot_rule_and_small_ones_do_not() {
        let rule = EngineConfig::default().slot_rule;
        let slots = |size: u64| rule.slots(&mut std::iter::once(size));
        assert_eq!(slots(LARGE_FILES.start), 3);
        assert_eq!(slots(LARGE_FILES.end - 1), 3);
        assert_eq!(slots(SMALL_FILES.end - 1), 5);
    }

    /// Adding follows the measured cost: a cheap chunk grows the next (at most fourfold), a
    /// costly one shrinks it, and every task adds at least one file.
    #[test]
    fn adding_tasks_fit_the_budget_from_what_the_last_one_cost() {
        assert_eq!(next_add_chunk(10, 4.0), 20);
        assert_eq!(next_add_chunk(10, 0.0), 40);
        assert_eq!(next_add_chunk(25, 100.0), 2);
        assert_eq!(next_add_chunk(1, 50.0), 1);
        assert_eq!(next_add_chunk(40, 8.0), 40);
    }
}
