//! The engine's bookkeeping of one live file: which phase it is in (each carrying its own data),
//! its parts waiting, signing and running, and the gate of its calls to the companion.

use std::collections::VecDeque;
use std::time::Duration;

use super::vocabulary::{Action, Event, FileId, FileState, PutTarget, Snapshot};
use crate::checksum::{ChecksumAlgorithm, object_checksum};
use crate::plan::Plan;
use crate::protocol::{CompleteUpload, CompletedPart, SignedUrl, StoredPart, UploadCreated};
use crate::schedule::Rank;
use crate::sorted::SortedMap;
use crate::time::{Instant, duration_from_secs};

/// The first stay on the companion route before direct PUTs are tried again, and the longest.
const FIRST_FALLBACK_PERIOD: Duration = Duration::from_secs(30);
const MAX_FALLBACK_PERIOD: Duration = Duration::from_secs(300);

/// A part not running: waiting for its URL, its turn or the end of a backoff.
#[derive(Debug)]
pub(super) struct Waiting {
    /// `None` until signed, or after the URL expired.
    pub url: Option<SignedUrl>,
    pub attempts: u32,
    /// Whether the part was already sent again at once after a one-off failure (it is, once).
    pub retried_at_once: bool,
    pub ready_at: Instant,
}

#[derive(Debug)]
pub(super) struct Running {
    pub sent: u64,
    pub url: Option<SignedUrl>,
    pub host: String,
    pub attempts: u32,
    pub retried_at_once: bool,
    pub last_progress: Instant,
    pub started: Instant,
    /// When progress first came: the request's overhead ended.
    pub first_byte: Option<Instant>,
    /// The adaptive policy's epoch this PUT last counted bytes in, and how many: what a failure
    /// or a stop takes back.
    pub counted: (u64, u64),
}

/// A created upload: its identity on the store and the state of each of its parts.
#[derive(Debug)]
pub(super) struct Upload {
    /// `None` for a single PUT.
    pub upload_id: Option<String>,
    pub key: String,
    pub token: String,
    pub location: String,
    pub expires_at: u64,
    pub plan: Plan,
    pub waiting: SortedMap<u32, Waiting>,
    /// Parts in the sign call in flight.
    pub signing: Vec<u32>,
    pub running: SortedMap<u32, Running>,
    /// ETags of confirmed parts, by part number.
    pub etags: SortedMap<u32, String>,
    pub confirmed: u64,
    /// Parts go through the companion.
    pub fallback: bool,
    /// When to try direct PUTs again while on the fallback: the store may answer again.
    pub fallback_until: Instant,
    /// How long the last stay on the fallback was; each next one doubles, up to a cap.
    pub fallback_period: Duration,
    /// Network failures of direct PUTs in a row.
    pub network_failures: u32,
    /// Outage failures of PUTs in a row: the backoff of the probes.
    pub outages: u32,
    /// The checksum its parts carry (`None`: off).
    pub algorithm: Option<ChecksumAlgorithm>,
    /// Each hashed part's checksum: a part is signed only once it has one.
    pub checksums: SortedMap<u32, String>,
    /// Parts in the hash action in flight.
    pub hashing: Vec<u32>,
    /// Parts of the next hash action: one at first, so the first part starts soon, doubling.
    pub hash_batch: usize,
    /// A resumed upload's parts the store holds, kept only once the local bytes hash to the
    /// store's checksum.
    pub unverified: SortedMap<u32, StoredPart>,
}

/// A URL's expiry moved to the local clock: the companion's clock and the browser's may
/// disagree, the lifetime it gave does not.
pub(super) fn localized(mut url: SignedUrl, now: Instant) -> SignedUrl {
    if let Some(lifetime) = url.expires_in {
        url.expires_at = now.unix_millis() / 1000 + lifetime;
    }
    url
}

/// The slowest rate a form upload is given besides the stall time: a form's progress is heard
/// only at its end (bytes per second).
const SLOWEST_FORM_RATE: f64 = 8.0 * 1024.0;

impl Upload {
    /// When running `part` counts as stalled: `stall_after` without progress; for a POST form,
    /// whose progress is heard only at its end, plus as long as its bytes take at
    /// [`SLOWEST_FORM_RATE`].
    pub fn stalls_at(&self, part: u32, running: &Running, stall_after: Duration) -> Instant {
        let mut allowed = stall_after;
        if running.url.as_ref().is_some_and(SignedUrl::is_form) {
            let range = self.plan.part_range(part);
            allowed += duration_from_secs((range.end - range.start) as f64 / SLOWEST_FORM_RATE);
        }
        running.last_progress + allowed
    }

    /// `checksum`: a single PUT's, hashed before its create.
    pub fn new(
        created: &UploadCreated,
        plan: Plan,
        now: Instant,
        algorithm: Option<ChecksumAlgorithm>,
        checksum: Option<String>,
    ) -> Self {
        let waiting = (1..=plan.part_count)
            .map(|part| {
                let url = (part == 1)
                    .then(|| created.url.clone().map(|url| localized(url, now)))
                    .flatten();
                (
                    part,
                    Waiting {
                        url,
                        attempts: 0,
                        retried_at_once: false,
                        ready_at: now,
                    },
                )
            })
            .collect();
        Self {
            upload_id: created.upload_id.clone(),
            key: created.key.clone(),
            token: created.token.clone(),
            location: created.location.clone(),
            expires_at: created.expires_at,
            plan,
            waiting,
            signing: Vec::new(),
            running: SortedMap::new(),
            etags: SortedMap::new(),
            confirmed: 0,
            fallback: false,
            fallback_until: now,
            fallback_period: Duration::ZERO,
            network_failures: 0,
            outages: 0,
            algorithm,
            checksums: checksum.map(|value| (1, value)).into_iter().collect(),
            hashing: Vec::new(),
            hash_batch: 1,
            unverified: SortedMap::new(),
        }
    }

    /// The upload a resume record describes, nothing confirmed yet.
    pub fn resumed(snapshot: &Snapshot, plan: Plan, now: Instant) -> Self {
        let created = UploadCreated {
            upload_id: Some(snapshot.upload_id.clone()),
            key: snapshot.key.clone(),
            token: snapshot.token.clone(),
            part_size: snapshot.part_size,
            part_count: snapshot.part_count,
            mode: plan.mode,
            url: None,
            expires_at: snapshot.expires_at,
            location: snapshot.location.clone(),
        };
        Self::new(&created, plan, now, snapshot.checksum, None)
    }

    /// Sends the parts through the companion for a while; direct PUTs are tried again after it.
    pub fn switch_to_fallback(&mut self, now: Instant) {
        self.fallback = true;
        self.fallback_period =
            (self.fallback_period * 2).clamp(FIRST_FALLBACK_PERIOD, MAX_FALLBACK_PERIOD);
        self.fallback_until = now + self.fallback_period;
    }

    /// Back to direct PUTs.
    pub fn leave_fallback(&mut self) {
        self.fallback = false;
        self.network_failures = 0;
    }

    /// Puts running parts back in line, ready at once (their URLs are still good).
    /// Stops every running PUT; returns their parts, and what each had counted for the
    /// adaptive policy.
    pub fn stop_running(&mut self, now: Instant) -> (Vec<u32>, Vec<(u64, u64)>) {
        let stopped = std::mem::take(&mut self.running);
        let parts = stopped.keys().copied().collect();
        let counted = stopped.values().map(|running| running.counted).collect();
        for (part, running) in stopped {
            let waiting = Waiting {
                url: running.url,
                attempts: running.attempts,
                retried_at_once: running.retried_at_once,
                ready_at: now,
            };
            self.waiting.insert(part, waiting);
        }
        (parts, counted)
    }

    pub fn in_flight(&self) -> u64 {
        self.running.values().map(|running| running.sent).sum()
    }

    /// Whether every part is confirmed.
    pub fn finished(&self) -> bool {
        self.etags.len() as u32 == self.plan.part_count
    }

    /// The Complete call, with the object's checksum computed from the parts'.
    pub fn complete(&self, file: FileId) -> Action {
        let parts: Vec<CompletedPart> = self
            .etags
            .iter()
            .map(|(&part, etag)| CompletedPart {
                part,
                etag: etag.clone(),
                checksum: self.checksums.get(&part).cloned(),
            })
            .collect();
        let checksum = self.algorithm.and_then(|algorithm| {
            let values: Vec<(&str, u64)> = parts
                .iter()
                .map(|part| {
                    let range = self.plan.part_range(part.part);
                    (
                        part.checksum.as_deref().unwrap_or_default(),
                        range.end - range.start,
                    )
                })
                .collect();
            object_checksum(algorithm, &values)
        });
        Action::Complete {
            file,
            upload_id: self.upload_id.clone(),
            request: CompleteUpload {
                token: self.token.clone(),
                parts,
                checksum,
            },
        }
    }

    /// Keeps a part the store holds: it is not sent again.
    pub fn keep(&mut self, stored: &StoredPart) {
        if self.waiting.remove(&stored.part).is_some() {
            self.confirmed += stored.size;
            self.etags.insert(stored.part, stored.etag.clone());
        }
    }

    /// Whether the part may be signed: it has its checksum, or needs none.
    pub fn signable(&self, part: u32) -> bool {
        self.algorithm.is_none() || self.checksums.contains_key(&part)
    }

    pub fn target(&self, part: u32, url: Option<SignedUrl>) -> PutTarget {
        match url {
            Some(url) if !self.fallback => PutTarget::Direct(url),
            _ => PutTarget::Companion {
                upload_id: self.upload_id.clone(),
                token: self.token.clone(),
                checksum: self.algorithm.zip(self.checksums.get(&part).cloned()),
            },
        }
    }
}

/// The companion's state for one file's calls (or for the config fetch): in flight, or waiting
/// out a backoff.
#[derive(Debug, Default)]
pub(super) struct CallGate {
    pub in_flight: bool,
    pub attempts: u32,
    /// Outage failures in a row: the backoff of the probes, which spend no attempt.
    pub outages: u32,
    pub ready_at: Instant,
}

impl CallGate {
    pub fn ready(&self, now: Instant) -> bool {
        !self.in_flight && self.ready_at <= now
    }
}

/// Where a live file is, with what that step needs.
#[derive(Debug)]
pub(super) enum Phase {
    /// Its fingerprint was asked for.
    Fingerprinting,
    /// Its key was asked for; another page may hold it.
    Claiming,
    Creating,
    /// Its resume record is checked against the parts the store holds.
    Listing(Box<Snapshot>),
    Uploading(Upload),
    /// Every part is confirmed; Complete is on its way (or waits out a backoff).
    Completing(Upload),
}

impl Phase {
    pub fn state(&self) -> FileState {
        match self {
            Phase::Fingerprinting | Phase::Claiming => FileState::Preparing,
            Phase::Creating => FileState::Creating,
            Phase::Listing(_) => FileState::Listing,
            Phase::Uploading(_) => FileState::Uploading,
            Phase::Completing(_) => FileState::Completing,
        }
    }

    pub fn upload(&self) -> Option<&Upload> {
        match self {
            Phase::Uploading(upload) | Phase::Completing(upload) => Some(upload),
            _ => None,
        }
    }

    pub fn upload_mut(&mut self) -> Option<&mut Upload> {
        match self {
            Phase::Uploading(upload) | Phase::Completing(upload) => Some(upload),
            _ => None,
        }
    }

    /// Uploading becomes Completing, keeping the upload.
    pub fn start_completing(&mut self) {
        if let Phase::Uploading(_) = self {
            let Phase::Uploading(upload) = std::mem::replace(self, Phase::Creating) else {
                unreachable!("matched above")
            };
            *self = Phase::Completing(upload);
        }
    }
}

/// A file the outer layer took.
#[derive(Debug)]
pub(super) struct Live {
    pub rank: Rank,
    pub size: u64,
    pub paused: bool,
    pub phase: Phase,
    pub call: CallGate,
    pub retries: u32,
    /// Waiting out an outage (told with [`Event::Waiting`]).
    pub waiting: bool,
    /// The adds this upload answers: its own, and those of the same file that joined it.
    pub handles: Vec<FileId>,
    /// Its fingerprint, once known: the same file added again joins this upload.
    pub key: Option<String>,
    /// The checksum algorithm the companion asked for when the file was taken.
    pub algorithm: Option<ChecksumAlgorithm>,
    /// Whether it goes as a single PUT, by the companion's plan: its checksum is needed before
    /// its create, which signs its URL.
    pub single: bool,
    /// A single PUT's checksum, once hashed.
    pub checksum: Option<String>,
    /// A single PUT's hash is on its way.
    pub hashing: bool,
}

impl Live {
    pub fn new(
        file: FileId,
        rank: Rank,
        size: u64,
        algorithm: Option<ChecksumAlgorithm>,
        single: bool,
    ) -> Self {
        Self {
            rank,
            size,
            paused: false,
            phase: Phase::Fingerprinting,
            call: CallGate::default(),
            retries: 0,
            waiting: false,
            handles: vec![file],
            key: None,
            algorithm,
            single,
            checksum: None,
            hashing: false,
        }
    }

    /// Tells every add this upload answers.
    pub fn tell(&self, event: Event, events: &mut VecDeque<Event>) {
        for &handle in &self.handles {
            events.push_back(event.for_file(handle));
        }
    }

    /// Marks the file as waiting out an outage or not, telling the application on a change.
    pub fn set_waiting(&mut self, file: FileId, waiting: bool, events: &mut VecDeque<Event>) {
        if self.waiting != waiting {
            self.waiting = waiting;
            self.tell(Event::Waiting { file, waiting }, events);
        }
    }
}
