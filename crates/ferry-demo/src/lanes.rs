//! The scheduler drawn as the seed draws it: a lane per slot, a bar per part PUT, and above them
//! a lane per file the outer layer is preparing. Bars are coloured by phase, and the gaps
//! between them (a slot idle, waiting for a prepared file) stay visible. The same chart shows
//! the real uploads and the simulated network; it is fed a sample of what runs at each tick.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_wasm::{FileId, RunningPart};
use leptos::prelude::*;

/// Seconds of history shown.
pub const WINDOW_SECS: f64 = 20.0;
/// Most preparation lanes drawn (the outer layer's `triggers`, usually 10).
const MAX_PREPARE_LANES: usize = 10;

/// What a bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Unique on the page: with its drawn width and phase, the key of its `rect`.
    seq: u64,
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

/// Bars made on this page: a bar's number is unique to it even across a reset of the chart, whose
/// old `rect`s a new bar must not take over.
static BARS_MADE: AtomicU64 = AtomicU64::new(0);

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
        // In the order given (the engine's), so the same run draws the same lanes each time.
        for (work, label) in present {
            let id = &work.identity();
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
                seq: BARS_MADE.fetch_add(1, Ordering::Relaxed),
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
    /// The first sample's time: bars are drawn at their distance from it, so a bar once drawn
    /// stays put and only the view slides.
    origin: Option<f64>,
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
        self.origin.get_or_insert(now);
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
/// Pixels per second of the bars' time axis.
const SCALE: f64 = (WIDTH - LABEL_WIDTH) / WINDOW_SECS;

/// A lane: its group (`prepare` or `slot`) and its place in it.
type LaneId = (&'static str, usize);

/// A bar as drawn, its `x` from the chart's origin.
#[derive(Debug, Clone, PartialEq)]
struct DrawnBar {
    seq: u64,
    x: f64,
    width: f64,
    phase: Phase,
    label: String,
}

impl DrawnBar {
    /// A bar is drawn again only when it grew or changed colour: on a tick, the running bars.
    fn key(&self) -> (u64, u64, Phase) {
        (self.seq, (self.width * 10.0) as u64, self.phase)
    }
}

impl Lanes {
    fn groups(&self) -> [(&'static str, &LaneSet); 2] {
        [("prepare", &self.prepare), ("slot", &self.slots)]
    }

    fn lane_ids(&self) -> Vec<LaneId> {
        self.groups()
            .into_iter()
            .flat_map(|(group, set)| (0..set.lanes.len()).map(move |index| (group, index)))
            .collect()
    }

    /// The top of a lane: preparation lanes first, then a gap, then the slots.
    fn top(&self, (group, index): LaneId) -> f64 {
        let above = if group == "slot" {
            self.prepare.lanes.len() as f64 * (LANE_HEIGHT + LANE_GAP) + GROUP_GAP
        } else {
            0.0
        };
        above + index as f64 * (LANE_HEIGHT + LANE_GAP)
    }

    fn height(&self) -> f64 {
        let count = self.prepare.lanes.len() + self.slots.lanes.len();
        (count as f64 * (LANE_HEIGHT + LANE_GAP) + 2.0 * GROUP_GAP).max(LANE_HEIGHT)
    }

    /// How far the view has slid along the bars' axis: its left edge is `WINDOW_SECS` ago.
    fn scroll(&self) -> f64 {
        (self.now - WINDOW_SECS - self.origin.unwrap_or(self.now)) * SCALE
    }

    fn bars(&self, (group, index): LaneId) -> Vec<DrawnBar> {
        let set = if group == "slot" {
            &self.slots
        } else {
            &self.prepare
        };
        let origin = self.origin.unwrap_or(self.now);
        set.lanes.get(index).map_or_else(Vec::new, |bars| {
            bars.iter()
                .map(|bar| DrawnBar {
                    seq: bar.seq,
                    x: (bar.start - origin) * SCALE,
                    // A bar of one sample is still seen.
                    width: ((bar.end - bar.start) * SCALE).max(2.0),
                    phase: bar.phase,
                    label: bar.label.clone(),
                })
                .collect()
        })
    }
}

/// The lanes as SVG: each bar a `rect` with `data-phase`, each lane a `g` with `data-lane`.
///
/// Bars are placed once, at their time from the chart's origin, inside a group that slides left
/// as time goes on: a tick redraws the running bars and moves one group, where drawing every
/// bar again made thousands of elements a second with many small files.
#[component]
pub fn LaneChart(
    /// Sampled by the caller on each tick.
    lanes: RwSignal<Lanes>,
    /// For tests: `scheduler-lanes` or `sim-lanes`.
    testid: &'static str,
) -> impl IntoView {
    let lane_ids = move || lanes.with(Lanes::lane_ids);
    let top = move |lane: LaneId| lanes.with(|lanes| lanes.top(lane));
    view! {
        <figure class="lanes">
            <svg data-testid=testid viewBox=move || format!("0 0 {WIDTH} {:.0}", lanes.with(Lanes::height)) role="img"
                aria-label="Timeline: a lane per file being prepared and per slot, a bar per part">
                <For each=lane_ids key=|lane| *lane let:lane>
                    <text x="0" y=move || format!("{:.1}", top(lane) + LANE_HEIGHT - 2.0) class="lane-label">{format!("{} {}", lane.0, lane.1 + 1)}</text>
                    <line x1=LABEL_WIDTH x2=WIDTH y1=move || format!("{:.1}", top(lane) + LANE_HEIGHT / 2.0) y2=move || format!("{:.1}", top(lane) + LANE_HEIGHT / 2.0) class="lane-line" />
                </For>
                // Its own viewport, so bars that slid out of the window are clipped at the labels.
                <svg x=LABEL_WIDTH y="0" width=WIDTH - LABEL_WIDTH height="100%">
                    <g transform=move || format!("translate({:.1},0)", -lanes.with(Lanes::scroll))>
                        <For each=lane_ids key=|lane| *lane let:lane>
                            <g data-lane=format!("{}-{}", lane.0, lane.1) transform=move || format!("translate(0,{:.1})", top(lane))>
                                <For each=move || lanes.with(|lanes| lanes.bars(lane)) key=DrawnBar::key let:bar>
                                    <rect class=format!("seg {}", bar.phase.as_str()) data-phase=bar.phase.as_str()
                                        x=format!("{:.1}", bar.x) y="0" width=format!("{:.1}", bar.width) height=LANE_HEIGHT>
                                        <title>{bar.label}</title>
                                    </rect>
                                </For>
                            </g>
                        </For>
                    </g>
                </svg>
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

#[cfg(test)]
mod tests {
    use super::*;

    fn put(file: u64, part: u32, retries: u32) -> (Work, String) {
        (
            Work::Put {
                file,
                part,
                retries,
            },
            format!("file {file} #{part}"),
        )
    }

    fn phases(set: &LaneSet) -> Vec<Vec<Phase>> {
        set.lanes
            .iter()
            .map(|bars| bars.iter().map(|bar| bar.phase).collect())
            .collect()
    }

    #[test]
    fn a_part_sent_again_turns_its_earlier_bar_to_retrying() {
        let mut set = LaneSet::default();
        set.observe(0.0, &[put(1, 1, 0), put(1, 2, 0)], 3);
        assert_eq!(
            phases(&set),
            [vec![Phase::Uploading], vec![Phase::Uploading], vec![]],
            "a lane per slot, the idle one too"
        );
        // Part 1 is gone from the running parts: stored, as far as this sample knows.
        set.observe(1.0, &[put(1, 2, 0)], 3);
        assert_eq!(phases(&set)[0], [Phase::Done]);
        // It is back as a retry: its first attempt was not stored after all.
        set.observe(2.0, &[put(1, 1, 1), put(1, 2, 0)], 3);
        assert_eq!(phases(&set)[0], [Phase::Retrying, Phase::Retrying]);
        // A retry that starts between two samples still recolours the attempt before it.
        set.observe(3.0, &[put(1, 1, 1), put(1, 2, 1)], 3);
        assert_eq!(phases(&set)[1], [Phase::Retrying, Phase::Retrying]);
        set.observe(4.0, &[], 3);
        assert_eq!(
            phases(&set),
            [
                vec![Phase::Retrying, Phase::Done],
                vec![Phase::Retrying, Phase::Done],
                vec![]
            ]
        );
    }

    #[test]
    fn bars_stay_put_and_only_running_ones_are_drawn_again() {
        let mut lanes = Lanes::default();
        lanes.observe(100.0, &[], &[put(1, 1, 0)], 1);
        lanes.observe(101.0, &[], &[put(1, 2, 0)], 1);
        let first = lanes.bars(("slot", 0));
        lanes.observe(102.0, &[], &[put(1, 2, 0)], 1);
        let second = lanes.bars(("slot", 0));
        assert_eq!(first.len(), 2);
        assert_eq!(
            first[0].key(),
            second[0].key(),
            "a stored part is not redrawn"
        );
        assert_ne!(first[1].key(), second[1].key(), "the running one grows");
        assert_eq!(first[0].x, 0.0, "placed from the first sample");
        assert_eq!(second[1].x, SCALE);
        // The view slides instead: its left edge is the window's length ago.
        assert_eq!(lanes.scroll(), (102.0 - WINDOW_SECS - 100.0) * SCALE);
        // Bars that left the window are dropped; a running one is kept however old.
        lanes.observe(100.0 + WINDOW_SECS + 1.5, &[], &[put(1, 2, 0)], 1);
        let kept = lanes.bars(("slot", 0));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].seq, second[1].seq);
    }

    #[test]
    fn a_reset_chart_draws_its_bars_under_new_keys() {
        let mut before = Lanes::default();
        before.observe(0.0, &[], &[put(1, 1, 0)], 1);
        let mut after = Lanes::default();
        after.observe(0.0, &[], &[put(1, 1, 0)], 1);
        assert_ne!(
            before.bars(("slot", 0))[0].key(),
            after.bars(("slot", 0))[0].key(),
            "a new bar must not take over an old bar's rect"
        );
    }

    #[test]
    fn slot_lanes_sit_below_the_preparation_lanes() {
        let mut lanes = Lanes::default();
        let prepare = |file| (Work::Prepare { file }, format!("file {file}"));
        lanes.observe(0.0, &[prepare(1), prepare(2)], &[put(3, 1, 0)], 2);
        assert_eq!(
            lanes.lane_ids(),
            [("prepare", 0), ("prepare", 1), ("slot", 0), ("slot", 1)]
        );
        assert_eq!(
            lanes.top(("slot", 0)),
            2.0 * (LANE_HEIGHT + LANE_GAP) + GROUP_GAP
        );
        assert_eq!(lanes.bars(("prepare", 1))[0].phase, Phase::Preparing);
    }
}
