//! The scheduler drawn as the seed draws it: a lane per slot, a bar per part PUT, and above them
//! a lane per file the outer layer is preparing. Bars are coloured by phase, and the gaps
//! between them (a slot idle, waiting for a prepared file) stay visible. The same chart shows
//! the real uploads and the simulated network; it is fed a sample of what runs at each tick.

use std::collections::HashMap;

use ferry_wasm::{FileId, RunningPart};
use leptos::prelude::*;

/// Seconds of history shown.
pub const WINDOW_SECS: f64 = 20.0;
/// Most preparation lanes drawn (the outer layer's `triggers`, usually 10).
const MAX_PREPARE_LANES: usize = 10;

/// What a bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The outer layer fingerprints, claims or creates the file.
    Preparing,
    /// A part PUT is running.
    Uploading,
    /// A part is being sent again, or this attempt ended in a retry.
    Retrying,
    /// The part is stored (or the file prepared).
    Done,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Preparing => "preparing",
            Self::Uploading => "uploading",
            Self::Retrying => "retrying",
            Self::Done => "done",
        }
    }
}

/// What runs now: a file being prepared, or a part of a file in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Work {
    Prepare { file: u64 },
    Put { file: u64, part: u32, retries: u32 },
}

impl Work {
    /// The bar this work continues: the same part, whatever its attempt.
    fn identity(self) -> (u64, u32) {
        match self {
            Work::Prepare { file } => (file, 0),
            Work::Put { file, part, .. } => (file, part),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub start: f64,
    pub end: f64,
    pub phase: Phase,
    pub label: String,
}

/// Lanes of bars; a new bar takes the first lane that has none open.
#[derive(Debug, Clone, Default, PartialEq)]
struct LaneSet {
    lanes: Vec<Vec<Bar>>,
    /// The lane and bar of what is running now.
    open: HashMap<(u64, u32), (usize, usize, Work)>,
    /// The last finished bar of each part, recoloured if the part is sent again.
    closed: HashMap<(u64, u32), (usize, usize)>,
}

impl LaneSet {
    fn observe(&mut self, now: f64, present: &[(Work, String)], at_least: usize) {
        let here: HashMap<(u64, u32), &(Work, String)> = present
            .iter()
            .map(|entry| (entry.0.identity(), entry))
            .collect();
        // What stopped running ends its bar: stored, unless it comes back as a retry.
        let ended: Vec<_> = self
            .open
            .iter()
            .filter(|(id, (_, _, work))| here.get(id).is_none_or(|(now_work, _)| now_work != work))
            .map(|(&id, &(lane, index, _))| (id, lane, index))
            .collect();
        for (id, lane, index) in ended {
            self.open.remove(&id);
            // A part stored, as far as this sample knows (a retry of it recolours the bar); a
            // preparation keeps its colour.
            let bar = &mut self.lanes[lane][index];
            bar.end = now;
            if bar.phase != Phase::Preparing {
                bar.phase = Phase::Done;
            }
            self.closed.insert(id, (lane, index));
        }
        for (id, (work, label)) in &here {
            if let Some(&(lane, index, _)) = self.open.get(id) {
                self.lanes[lane][index].end = now;
                continue;
            }
            let retrying = matches!(work, Work::Put { retries, .. } if *retries > 0);
            if retrying && let Some((lane, index)) = self.closed.remove(id) {
                // The attempt that ended was not stored after all.
                if let Some(bar) = self
                    .lanes
                    .get_mut(lane)
                    .and_then(|bars| bars.get_mut(index))
                {
                    bar.phase = Phase::Retrying;
                }
            }
            let busy: Vec<usize> = self.open.values().map(|(lane, ..)| *lane).collect();
            let lane = (0..)
                .find(|lane| !busy.contains(lane))
                .expect("a free lane");
            if self.lanes.len() <= lane {
                self.lanes.resize_with(lane + 1, Vec::new);
            }
            let phase = match work {
                Work::Prepare { .. } => Phase::Preparing,
                Work::Put { .. } if retrying => Phase::Retrying,
                Work::Put { .. } => Phase::Uploading,
            };
            self.lanes[lane].push(Bar {
                start: now,
                end: now,
                phase,
                label: label.clone(),
            });
            self.open
                .insert(*id, (lane, self.lanes[lane].len() - 1, *work));
        }
        self.forget_before(now - WINDOW_SECS);
        // As many lanes as slots allowed, more while bars drawn in them are in the window.
        if self.lanes.len() < at_least {
            self.lanes.resize_with(at_least, Vec::new);
        }
        while self.lanes.len() > at_least && self.lanes.last().is_some_and(Vec::is_empty) {
            self.lanes.pop();
        }
    }

    /// Drops bars that left the window, keeping the indexes of open and closed bars right.
    fn forget_before(&mut self, horizon: f64) {
        for (lane, bars) in self.lanes.iter_mut().enumerate() {
            let gone = bars.iter().take_while(|bar| bar.end < horizon).count();
            let open_here = self
                .open
                .values()
                .any(|(l, index, _)| *l == lane && *index < gone);
            if gone == 0 || open_here {
                continue;
            }
            bars.drain(..gone);
            for (l, index, _) in self.open.values_mut() {
                if *l == lane {
                    *index -= gone;
                }
            }
            self.closed.retain(|_, (l, index)| {
                if *l != lane {
                    return true;
                }
                if *index < gone {
                    return false;
                }
                *index -= gone;
                true
            });
        }
    }
}

/// The chart: preparation lanes over slot lanes, in seconds (real or virtual).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lanes {
    now: f64,
    prepare: LaneSet,
    slots: LaneSet,
}

impl Lanes {
    /// Takes a sample at `now` of an engine (the page's or the simulator's): the files it
    /// prepares, the parts it sends, named by `name_of`, and how many slots its rule allows
    /// (their lanes are drawn even while idle).
    pub fn sample(
        &mut self,
        now: f64,
        preparing: Vec<FileId>,
        running: Vec<RunningPart>,
        slots: usize,
        name_of: impl Fn(FileId) -> String,
    ) {
        let preparing: Vec<(Work, String)> = preparing
            .into_iter()
            .map(|file| (Work::Prepare { file: file.0 }, name_of(file)))
            .collect();
        let running: Vec<(Work, String)> = running
            .into_iter()
            .map(|part| {
                let work = Work::Put {
                    file: part.file.0,
                    part: part.part,
                    retries: part.retries,
                };
                (work, format!("{} #{}", name_of(part.file), part.part))
            })
            .collect();
        self.observe(now, &preparing, &running, slots);
    }

    fn observe(
        &mut self,
        now: f64,
        preparing: &[(Work, String)],
        running: &[(Work, String)],
        slots: usize,
    ) {
        self.now = now;
        let preparing: Vec<_> = preparing.iter().take(MAX_PREPARE_LANES).cloned().collect();
        self.prepare.observe(now, &preparing, 0);
        self.slots.observe(now, running, slots);
    }
}

const WIDTH: f64 = 600.0;
const LANE_HEIGHT: f64 = 12.0;
const LANE_GAP: f64 = 3.0;
const LABEL_WIDTH: f64 = 64.0;
const GROUP_GAP: f64 = 10.0;

/// The lanes as SVG: each bar a `rect` with `data-phase`, each lane a `g` with `data-lane`.
#[component]
pub fn LaneChart(
    /// Sampled by the caller on each tick.
    lanes: RwSignal<Lanes>,
    /// For tests: `scheduler-lanes` or `sim-lanes`.
    testid: &'static str,
) -> impl IntoView {
    let draw = move || {
        let lanes = lanes.get();
        let left = lanes.now - WINDOW_SECS;
        let x =
            move |t: f64| LABEL_WIDTH + (t - left).max(0.0) * (WIDTH - LABEL_WIDTH) / WINDOW_SECS;
        let mut y = 0.0;
        let mut rows = Vec::new();
        for (group, set) in [("prepare", &lanes.prepare), ("slot", &lanes.slots)] {
            for (index, bars) in set.lanes.iter().enumerate() {
                let top = y;
                let rects = bars
                    .iter()
                    .map(|bar| {
                        let start = x(bar.start);
                        // A bar of one sample is still seen.
                        let width = (x(bar.end) - start).max(2.0);
                        view! {
                            <rect class=format!("seg {}", bar.phase.as_str()) data-phase=bar.phase.as_str()
                                x=format!("{start:.1}") y=format!("{top:.1}") width=format!("{width:.1}") height=LANE_HEIGHT>
                                <title>{bar.label.clone()}</title>
                            </rect>
                        }
                    })
                    .collect_view();
                rows.push(view! {
                    <g data-lane=format!("{group}-{index}")>
                        <text x="0" y=format!("{:.1}", top + LANE_HEIGHT - 2.0) class="lane-label">{format!("{group} {}", index + 1)}</text>
                        <line x1=LABEL_WIDTH x2=WIDTH y1=format!("{:.1}", top + LANE_HEIGHT / 2.0) y2=format!("{:.1}", top + LANE_HEIGHT / 2.0) class="lane-line" />
                        {rects}
                    </g>
                });
                y += LANE_HEIGHT + LANE_GAP;
            }
            y += GROUP_GAP;
        }
        rows.collect_view()
    };
    let height = move || {
        lanes.with(|lanes| {
            let count = lanes.prepare.lanes.len() + lanes.slots.lanes.len();
            (count as f64 * (LANE_HEIGHT + LANE_GAP) + 2.0 * GROUP_GAP).max(LANE_HEIGHT)
        })
    };
    view! {
        <figure class="lanes">
            <svg data-testid=testid viewBox=move || format!("0 0 {WIDTH} {:.0}", height()) role="img"
                aria-label="Timeline: a lane per file being prepared and per slot, a bar per part">
                {draw}
            </svg>
            <figcaption class="legend">
                <span class="key preparing">"preparing"</span>
                <span class="key uploading">"uploading"</span>
                <span class="key retrying">"retrying"</span>
                <span class="key done">"done"</span>
                {format!(" — the last {WINDOW_SECS:.0} s; gaps are idle slots")}
            </figcaption>
        </figure>
    }
}
