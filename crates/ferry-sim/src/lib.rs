//! A deterministic simulator that drives Ferry's real engine.
//!
//! Virtual time jumps from one event to the next (a companion answer, a transfer finishing, a
//! scheduled command) instead of sleeping, so a 20,000-file batch runs in seconds and every run is
//! reproducible from its seed. The network is modelled as one link whose bandwidth is shared
//! equally by the PUTs moving bytes, each connection at most at its own rate (window / round
//! trip), with a latency per request and per companion call, an extra latency for preparing a
//! file (create), connections that drop, and a gateway that admits only so many PUTs at once. The simulator answers every engine action a
//! browser does, fingerprints, claims and checksums included, so files added as copies of another
//! join its upload as in a page. Faults come from a seeded generator.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ferry_core::plan::{Plan, UploadMode};
use ferry_core::protocol::{CompanionConfig, SignedPart, SignedUrl, StoredObject, UploadCreated};
use ferry_core::{
    Action, Call, ChecksumAlgorithm, Claim, Engine, EngineConfig, Event, Failure, FileId, FileSpec,
    Instant, StoreLimits,
};
use serde::Serialize;

/// The modelled network. Times are seconds, bandwidth bytes per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Bytes per second, shared equally by the PUTs moving bytes.
    pub bandwidth: f64,
    /// Bytes per second one connection carries at most (its window over the round trip).
    pub connection_rate: f64,
    /// Mean bytes a connection carries before it drops (exponentially distributed).
    pub bytes_between_drops: f64,
    /// PUTs a gateway in front of the store admits at once; the others are answered 503
    /// `SlowDown` after the request's latency.
    pub admits: Option<usize>,
    /// Time from a PUT's start until its bytes flow (connection, request, first byte).
    pub put_latency: f64,
    /// Time a companion call takes (sign, complete).
    pub companion_latency: f64,
    /// Extra time to prepare a file (create): the seeds' "preparation latency".
    pub prepare_latency: f64,
    /// Time to fingerprint a file that may be resumed (hashing its two ends).
    pub fingerprint_latency: f64,
    /// Bytes a second the client checksums (one range after another).
    pub hash_rate: f64,
}

impl Default for Link {
    /// About 100 Mbit/s with a 40 ms round trip.
    fn default() -> Self {
        Self {
            bandwidth: 12.5e6,
            connection_rate: f64::INFINITY,
            bytes_between_drops: f64::INFINITY,
            admits: None,
            put_latency: 0.04,
            companion_latency: 0.04,
            prepare_latency: 0.0,
            fingerprint_latency: 0.002,
            // CRC32C in wasm, reading the File, on the machines of BENCHMARKS.md.
            hash_rate: 1.0e9,
        }
    }
}

/// Seeded faults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    pub seed: u64,
    /// Probability that a part PUT fails (at the end of its transfer, with a 500).
    pub put_failure: f64,
    /// Intervals (start, end) of virtual seconds when nothing answers: running PUTs die, and
    /// every request fails at the network level.
    pub outages: Vec<(f64, f64)>,
}

impl Faults {
    fn in_outage(&self, at: f64) -> bool {
        self.outages
            .iter()
            .any(|&(start, end)| (start..end).contains(&at))
    }
}

/// Virtual second 0, as engine time.
const EPOCH_MS: u64 = 1_700_000_000_000;

fn instant(secs: f64) -> Instant {
    Instant::from_unix_millis(EPOCH_MS + (secs * 1000.0).round() as u64)
}

fn secs(at: Instant) -> f64 {
    at.unix_millis().saturating_sub(EPOCH_MS) as f64 / 1000.0
}

/// A command the application gives at a moment of virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause(usize),
    Resume(usize),
    Cancel(usize),
    PauseAll,
    ResumeAll,
}

/// What an observer sees after each step.
#[derive(Debug)]
pub enum Observation<'a> {
    /// The driver just carried out `action`.
    Action(&'a Action, &'a Engine),
    /// A file ended.
    Event(&'a Event),
    /// A command was applied and every action it caused was carried out.
    Commanded(Command, FileId, &'a Sim),
}

/// What a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Report {
    /// Virtual seconds from the first add to the last event.
    pub elapsed: f64,
    pub done: usize,
    pub failed: usize,
    pub puts: u64,
    pub companion_calls: u64,
    /// Of the slot-time from the first PUT until no part was left unstarted, the share in which a
    /// slot the rule allowed stood empty.
    pub slot_idle_fraction: f64,
    pub peak_live: usize,
    pub max_running: usize,
    /// Retries the engine spent (parts and calls).
    pub retries: u64,
    /// Files that joined the upload of a copy added before them.
    pub joined: u64,
}

#[derive(Debug)]
struct Transfer {
    file: FileId,
    part: u32,
    flows_at: f64,
    remaining: f64,
    size: u64,
    /// The transfer ends when `remaining` falls to this: 0, or where its connection drops.
    ends_at_remaining: f64,
    fault: Fault,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// The store answers 500 at the end.
    Internal,
    /// The connection drops on the way.
    Drop,
}

/// How often a browser reports upload progress while bytes flow.
const PROGRESS_EVERY: f64 = 0.05;

#[derive(Debug)]
enum Answer {
    Config(CompanionConfig),
    ConfigFailed(Failure),
    Fingerprinted(FileId, String),
    Created(FileId, UploadCreated),
    CreatedBatch(Vec<(FileId, UploadCreated)>),
    BatchFailed(Vec<FileId>, Failure),
    Listed(FileId),
    Hashed(FileId, Vec<String>),
    Signed(FileId, Vec<SignedPart>),
    Completed(FileId, StoredObject),
    Failed(FileId, Call, Failure),
    PutRefused(FileId, u32),
}

pub use ferry_core::time::Rng;

pub mod compare;

/// The simulator: the engine, a modelled link and companion, and virtual time.
#[derive(Debug)]
pub struct Sim {
    pub engine: Engine,
    companion: CompanionConfig,
    link: Link,
    faults: Faults,
    rng: Rng,
    now: f64,
    ids: Vec<FileId>,
    sizes: HashMap<FileId, u64>,
    /// Each file's fingerprint: copies of one file share it.
    keys: HashMap<FileId, String>,
    transfers: Vec<Transfer>,
    answers: Vec<(f64, Answer)>,
    commands: Vec<(f64, Command)>,
    /// Part count of files whose upload was created, and how many of their parts started.
    parts: HashMap<FileId, (u32, u32)>,
    /// Each created upload's plan.
    plans: HashMap<FileId, Plan>,
    /// Multipart uploads the engine asked to abort.
    pub aborted: BTreeSet<FileId>,
    /// Files whose upload was created as multipart.
    pub multipart: BTreeSet<FileId>,
    /// Confirmed part ranges per file, for coverage checks.
    pub confirmed: BTreeMap<FileId, Vec<std::ops::Range<u64>>>,
    report: Report,
    idle: (f64, f64),
    first_put: Option<f64>,
}

/// The limits the modelled companion announces: S3's, any file size.
pub fn companion_config(preferred_part_size: u64) -> CompanionConfig {
    CompanionConfig {
        checksum: Some(ChecksumAlgorithm::Crc32c),
        limits: StoreLimits::S3,
        preferred_part_size,
        max_file_size: StoreLimits::S3.max_object_size,
        allowed_types: Vec::new(),
        url_lifetime_secs: 900,
        conditional_writes: false,
        complete_single_puts: false,
        previews: false,
        create_batch: 100,
    }
}

impl Sim {
    pub fn new(config: EngineConfig, link: Link, faults: Faults) -> Self {
        let companion = companion_config(ferry_core::plan::DEFAULT_PREFERRED_PART_SIZE);
        Self {
            engine: Engine::new(config),
            companion,
            link,
            rng: Rng::new(faults.seed),
            faults,
            now: 0.0,
            ids: Vec::new(),
            sizes: HashMap::new(),
            keys: HashMap::new(),
            transfers: Vec::new(),
            answers: Vec::new(),
            commands: Vec::new(),
            parts: HashMap::new(),
            plans: HashMap::new(),
            aborted: BTreeSet::new(),
            multipart: BTreeSet::new(),
            confirmed: BTreeMap::new(),
            report: Report::default(),
            idle: (0.0, 0.0),
            first_put: None,
        }
    }

    /// Queues a file; returns its index for commands.
    pub fn add(&mut self, size: u64, priority: i32) -> usize {
        let index = self.ids.len();
        self.add_named(size, priority, format!("file-{index}"))
    }

    /// Queues the same file as the one at `index` again (another add of one picked file).
    pub fn add_copy(&mut self, index: usize, priority: i32) -> usize {
        let original = self.ids[index];
        let key = self.keys[&original].clone();
        self.add_named(self.sizes[&original], priority, key)
    }

    fn add_named(&mut self, size: u64, priority: i32, key: String) -> usize {
        let id = self.engine.add(FileSpec {
            size,
            priority,
            ..FileSpec::default()
        });
        self.sizes.insert(id, size);
        self.keys.insert(id, key);
        self.ids.push(id);
        self.ids.len() - 1
    }

    /// Gives `command` at virtual time `at`.
    pub fn schedule(&mut self, at: f64, command: Command) {
        self.commands.push((at, command));
    }

    pub fn id(&self, index: usize) -> FileId {
        self.ids[index]
    }

    /// PUTs the modelled store is still receiving for `file`.
    pub fn transfers_of(&self, file: FileId) -> usize {
        self.transfers.iter().filter(|t| t.file == file).count()
    }

    /// Runs until every file has ended.
    pub fn run(&mut self, observe: &mut dyn FnMut(Observation<'_>)) -> Report {
        self.run_until(f64::INFINITY, observe);
        self.report()
    }

    /// Runs until virtual time `until`, or until every file has ended; returns whether anything
    /// is still under way. For showing a run as it goes (the demo's simulated network).
    pub fn run_until(&mut self, until: f64, observe: &mut dyn FnMut(Observation<'_>)) -> bool {
        loop {
            self.drive(observe);
            let Some(next) = self.next_moment() else {
                return false;
            };
            if next > until {
                self.advance(until);
                return true;
            }
            self.advance(next);
            self.deliver(observe);
        }
    }

    /// Virtual seconds since the start.
    pub fn now(&self) -> f64 {
        self.now
    }

    /// What the run measured so far.
    pub fn report(&self) -> Report {
        let stats = self.engine.stats();
        Report {
            elapsed: self.now,
            puts: stats.puts,
            companion_calls: stats.companion_calls,
            peak_live: stats.peak_live,
            retries: stats.retries,
            joined: stats.joined,
            slot_idle_fraction: if self.idle.1 > 0.0 {
                self.idle.0 / self.idle.1
            } else {
                0.0
            },
            ..self.report
        }
    }

    fn drive(&mut self, observe: &mut dyn FnMut(Observation<'_>)) {
        while let Some(action) = self.engine.poll_action(instant(self.now)) {
            self.execute(&action);
            observe(Observation::Action(&action, &self.engine));
        }
        while let Some(event) = self.engine.poll_event() {
            match &event {
                Event::Done { .. } => self.report.done += 1,
                Event::Failed { .. } => self.report.failed += 1,
                Event::Resumed { .. } | Event::Waiting { .. } | Event::Joined { .. } => {}
            }
            observe(Observation::Event(&event));
        }
        self.report.max_running = self.report.max_running.max(self.engine.running_puts());
    }

    /// The companion answers `answer` after `latency`, unless an outage swallows the call.
    fn answer(&mut self, file: FileId, call: Call, latency: f64, answer: Answer) {
        let at = self.now + latency;
        let answer = if self.faults.in_outage(self.now) || self.faults.in_outage(at) {
            Answer::Failed(file, call, Failure::network("outage"))
        } else {
            answer
        };
        self.answers.push((at, answer));
    }

    /// What the modelled companion's create answers for `file`: its plan, and a URL for a
    /// single PUT.
    fn create(&mut self, file: FileId) -> UploadCreated {
        let size = self.sizes[&file];
        let preferred = self
            .engine
            .part_size_for(size)
            .unwrap_or(self.companion.preferred_part_size);
        let plan = Plan::new(size, preferred, &self.companion.limits).expect("sizes under 5 TiB");
        self.plans.insert(file, plan);
        let multipart = plan.mode == UploadMode::Multipart;
        if multipart {
            self.multipart.insert(file);
        }
        self.parts.insert(file, (plan.part_count, 0));
        UploadCreated {
            upload_id: multipart.then(|| format!("upload-{}", file.0)),
            key: format!("key-{}", file.0),
            token: String::new(),
            part_size: plan.part_size,
            part_count: plan.part_count,
            mode: plan.mode,
            url: (!multipart).then(|| url(1)),
            expires_at: u64::MAX,
            location: String::new(),
        }
    }

    fn execute(&mut self, action: &Action) {
        let companion = self.link.companion_latency;
        match action {
            Action::FetchConfig => {
                let at = self.now + companion;
                let answer = if self.faults.in_outage(self.now) || self.faults.in_outage(at) {
                    Answer::ConfigFailed(Failure::network("outage"))
                } else {
                    Answer::Config(self.companion.clone())
                };
                self.answers.push((at, answer));
            }
            Action::Fingerprint { file, resumable } => {
                // A single PUT is named by its File object at once; a resumable file hashes.
                let latency = if *resumable {
                    self.link.fingerprint_latency
                } else {
                    0.0
                };
                let key = self.keys[file].clone();
                self.answers
                    .push((self.now + latency, Answer::Fingerprinted(*file, key)));
            }
            Action::Claim { file, .. } => {
                // One page: the key is free at once and no record was kept.
                self.engine
                    .handle_claimed(*file, Claim::Fresh, instant(self.now));
            }
            Action::Hash {
                file,
                algorithm,
                parts,
            } => {
                // No bytes here: each range's checksum is that of its file and place, valid for
                // the algorithm, so the engine combines them as it would real ones.
                let values = parts
                    .iter()
                    .map(|(_, range)| {
                        let place = [file.0.to_be_bytes(), range.start.to_be_bytes()].concat();
                        algorithm.checksum(&place)
                    })
                    .collect();
                let bytes: u64 = parts.iter().map(|(_, range)| range.end - range.start).sum();
                let latency = bytes as f64 / self.link.hash_rate;
                self.answers
                    .push((self.now + latency, Answer::Hashed(*file, values)));
            }
            Action::Create { file, .. } => {
                let created = self.create(*file);
                let latency = companion + self.link.prepare_latency;
                self.answer(
                    *file,
                    Call::Create,
                    latency,
                    Answer::Created(*file, created),
                );
            }
            Action::CreateBatch { files } => {
                let at = self.now + companion + self.link.prepare_latency;
                let files: Vec<FileId> = files.iter().map(|batched| batched.file).collect();
                let answer = if self.faults.in_outage(self.now) || self.faults.in_outage(at) {
                    Answer::BatchFailed(files, Failure::network("outage"))
                } else {
                    let created = files.iter().map(|&file| (file, self.create(file)));
                    Answer::CreatedBatch(created.collect())
                };
                self.answers.push((at, answer));
            }
            Action::Sign { file, request, .. } => {
                let urls = request
                    .parts
                    .iter()
                    .map(|&part| SignedPart {
                        part,
                        url: url(part),
                    })
                    .collect();
                self.answers
                    .push((self.now + companion, Answer::Signed(*file, urls)));
            }
            Action::Put {
                file, part, range, ..
            } => {
                self.first_put.get_or_insert(self.now);
                if let Some(counts) = self.parts.get_mut(file) {
                    counts.1 += 1;
                }
                self.confirmed.entry(*file).or_default();
                if self
                    .link
                    .admits
                    .is_some_and(|admits| self.transfers.len() >= admits)
                {
                    self.answers.push((
                        self.now + self.link.put_latency,
                        Answer::PutRefused(*file, *part),
                    ));
                    return;
                }
                let size = range.end - range.start;
                // Where the connection drops, if before the end: exponential, by its mean.
                let mean = self.link.bytes_between_drops;
                let drop_after = if mean.is_finite() {
                    -(1.0 - self.rng.unit()).ln() * mean
                } else {
                    f64::INFINITY
                };
                let (ends_at_remaining, fault) = if drop_after < size as f64 {
                    (size as f64 - drop_after, Fault::Drop)
                } else if self.rng.unit() < self.faults.put_failure {
                    (0.0, Fault::Internal)
                } else {
                    (0.0, Fault::None)
                };
                self.transfers.push(Transfer {
                    file: *file,
                    part: *part,
                    flows_at: self.now + self.link.put_latency,
                    remaining: size as f64,
                    size,
                    ends_at_remaining,
                    fault,
                });
            }
            Action::Complete { file, request, .. } => {
                let object = StoredObject {
                    checksum: None,
                    key: format!("key-{}", file.0),
                    etag: format!("etag-{}", request.parts.len()),
                    size: self.sizes[file],
                    location: String::new(),
                };
                self.answers
                    .push((self.now + companion, Answer::Completed(*file, object)));
            }
            Action::ListParts { file, .. } => {
                self.answer(*file, Call::ListParts, companion, Answer::Listed(*file));
            }
            Action::StopPuts { file, parts } => {
                // An aborted request never answers; its part may start again later.
                let before = self.transfers.len();
                self.transfers
                    .retain(|transfer| transfer.file != *file || !parts.contains(&transfer.part));
                let stopped = (before - self.transfers.len()) as u32;
                if let Some(counts) = self.parts.get_mut(file) {
                    counts.1 -= stopped;
                }
            }
            Action::Abort { file, .. } => {
                self.aborted.insert(*file);
            }
        }
    }

    /// The earliest moment something happens: an answer, a transfer's bytes starting or ending,
    /// a command.
    fn next_moment(&self) -> Option<f64> {
        let rate = self.rate();
        let transfers = self.transfers.iter().map(|t| {
            if t.flows_at > self.now {
                t.flows_at
            } else {
                self.now + (t.remaining - t.ends_at_remaining) / rate
            }
        });
        // Progress comes every so often while bytes flow, as a browser reports it (on a grid, so
        // a run stepped with `run_until` sees the same moments).
        let tick = ((self.now / PROGRESS_EVERY).floor() + 1.0) * PROGRESS_EVERY;
        let progress = self
            .transfers
            .iter()
            .any(|t| t.flows_at <= self.now)
            .then_some(if tick > self.now {
                tick
            } else {
                tick + PROGRESS_EVERY
            });
        let answers = self.answers.iter().map(|(at, _)| *at);
        let commands = self.commands.iter().map(|(at, _)| at.max(self.now));
        let timer = self.engine.poll_timeout().map(secs);
        let pending = timer.is_some()
            || !self.transfers.is_empty()
            || !self.answers.is_empty()
            || !self.commands.is_empty();
        // An outage starting matters only while something is under way.
        let outages = self
            .faults
            .outages
            .iter()
            .map(|&(start, _)| start)
            .filter(|&start| pending && start > self.now);
        transfers
            .chain(progress)
            .chain(answers)
            .chain(commands)
            .chain(timer)
            .chain(outages)
            .min_by(f64::total_cmp)
    }

    fn advance(&mut self, to: f64) {
        let dt = to - self.now;
        if self.first_put.is_some() && self.unstarted_work() {
            let slots = self.engine.slots() as f64;
            let running = self.engine.running_puts() as f64;
            self.idle.0 += (slots - running).max(0.0) * dt;
            self.idle.1 += slots * dt;
        }
        let rate = self.rate();
        for transfer in &mut self.transfers {
            if transfer.flows_at <= self.now {
                transfer.remaining -= rate * dt;
            }
        }
        self.now = to;
    }

    /// Bytes a second of each transfer whose bytes flow: an equal share of the link, at most a
    /// connection's rate.
    fn rate(&self) -> f64 {
        let flowing = self
            .transfers
            .iter()
            .filter(|t| t.flows_at <= self.now)
            .count();
        (self.link.bandwidth / flowing.max(1) as f64).min(self.link.connection_rate)
    }

    /// Whether some part has not started yet: queued files, files being created, parts waiting.
    fn unstarted_work(&self) -> bool {
        self.engine.queued_files() > 0
            || self.engine.live_files() > self.parts.len()
            || self.parts.values().any(|&(count, started)| started < count)
    }

    fn deliver(&mut self, observe: &mut dyn FnMut(Observation<'_>)) {
        let now = self.now;
        let at = instant(now);
        // An outage beginning kills every running PUT.
        if self.faults.outages.iter().any(|&(start, _)| start == now) {
            for transfer in std::mem::take(&mut self.transfers) {
                self.engine.handle_put_failed(
                    transfer.file,
                    transfer.part,
                    Failure::network("outage"),
                    at,
                );
            }
        }
        self.engine.handle_timeout(at);

        // Commands due now.
        let (due, later): (Vec<_>, Vec<_>) =
            self.commands.drain(..).partition(|(at, _)| *at <= now);
        self.commands = later;
        for (_, command) in due {
            let file = match command {
                Command::Pause(i) | Command::Resume(i) | Command::Cancel(i) => self.ids[i],
                Command::PauseAll | Command::ResumeAll => FileId(u64::MAX),
            };
            match command {
                Command::Pause(_) => self.engine.pause(file),
                Command::Resume(_) => self.engine.resume(file),
                Command::Cancel(_) => self.engine.cancel(file),
                Command::PauseAll => self.engine.pause_all(),
                Command::ResumeAll => self.engine.resume_all(),
            }
            self.drive(observe);
            observe(Observation::Commanded(command, file, self));
        }

        // Answers due now, in the order they were asked.
        let (due, later): (Vec<_>, Vec<_>) = self.answers.drain(..).partition(|(at, _)| *at <= now);
        self.answers = later;
        for (_, answer) in due {
            match answer {
                Answer::Config(config) => self.engine.handle_config(config, at),
                Answer::ConfigFailed(failure) => self.engine.handle_config_failed(failure, at),
                Answer::Fingerprinted(file, key) => {
                    self.engine.handle_fingerprinted(file, Some(key), at)
                }
                Answer::Created(file, created) => self.engine.handle_created(file, created, at),
                Answer::CreatedBatch(created) => {
                    for (file, created) in created {
                        self.engine.handle_created(file, created, at);
                    }
                }
                Answer::BatchFailed(files, failure) => {
                    self.engine.handle_batch_failed(&files, failure, at)
                }
                Answer::Listed(file) => self.engine.handle_listed(file, Vec::new(), at),
                Answer::Hashed(file, values) => self.engine.handle_hashed(file, values, at),
                Answer::Signed(file, urls) => self.engine.handle_signed(file, urls, at),
                Answer::Completed(file, object) => self.engine.handle_completed(file, object, at),
                Answer::Failed(file, call, failure) => {
                    self.engine.handle_call_failed(file, call, failure, at)
                }
                Answer::PutRefused(file, part) => {
                    let failure = Failure {
                        status: Some(503),
                        code: "SlowDown".into(),
                        message: "the gateway admits no more PUTs".into(),
                        retry_after: None,
                    };
                    self.engine.handle_put_failed(file, part, failure, at);
                }
            }
        }

        // Transfers: progress for all, an answer for those whose bytes are all sent.
        let mut finished = Vec::new();
        self.transfers.retain(|transfer| {
            let done = transfer.flows_at <= now
                && transfer.remaining - transfer.ends_at_remaining
                    <= 1e-6 * (transfer.size as f64).max(1.0);
            if done {
                finished.push((transfer.file, transfer.part, transfer.fault));
            }
            !done
        });
        for transfer in &self.transfers {
            let sent = transfer.size - transfer.remaining.max(0.0).round() as u64;
            self.engine.handle_put_progress(
                transfer.file,
                transfer.part,
                sent.min(transfer.size),
                at,
            );
        }
        for (file, part, fault) in finished {
            if self.faults.in_outage(now) {
                self.engine
                    .handle_put_failed(file, part, Failure::network("outage"), at);
            } else if fault == Fault::Drop {
                self.engine.handle_put_failed(
                    file,
                    part,
                    Failure::network("connection dropped"),
                    at,
                );
            } else if fault == Fault::Internal {
                let failure = Failure {
                    status: Some(500),
                    code: "InternalError".into(),
                    message: "injected fault".into(),
                    retry_after: None,
                };
                self.engine.handle_put_failed(file, part, failure, at);
            } else {
                let range = self.part_range(file, part);
                self.confirmed.entry(file).or_default().push(range);
                self.engine
                    .handle_put_done(file, part, format!("\"etag-{part}\""), at);
            }
        }
    }

    fn part_range(&self, file: FileId, part: u32) -> std::ops::Range<u64> {
        self.plans[&file].part_range(part)
    }
}

fn url(part: u32) -> SignedUrl {
    SignedUrl {
        url: format!("sim://part/{part}"),
        headers: Default::default(),
        expires_at: u64::MAX,
        expires_in: None,
        form: Default::default(),
    }
}
