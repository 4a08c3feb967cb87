//! What every engine test drives the same way: an engine that knows its companion, and the
//! preparation a browser answers at once (each file its own fingerprint, each claim fresh).
#![allow(dead_code, reason = "each test file uses part of it")]

use ferry_core::protocol::CompanionConfig;
use ferry_core::{Action, Claim, Engine, EngineConfig, Instant};

/// An engine told the companion's limits before any file is added.
pub fn ready(config: EngineConfig, companion: CompanionConfig) -> Engine {
    let mut engine = Engine::new(config);
    engine.handle_config(companion, Instant::default());
    engine
}

/// The engine's next action that is not preparation; fingerprints and claims are answered on
/// the way (every file distinct, nothing to resume).
pub fn poll(engine: &mut Engine, now: Instant) -> Option<Action> {
    loop {
        match engine.poll_action(now)? {
            Action::Fingerprint { file, .. } => {
                engine.handle_fingerprinted(file, Some(format!("file-{}", file.0)), now)
            }
            Action::Claim { file, .. } => engine.handle_claimed(file, Claim::Fresh, now),
            action => return Some(action),
        }
    }
}

/// Adds a file that a resume record claims: its fingerprint and claim answered with `snapshot`.
pub fn add_resumed(
    engine: &mut Engine,
    spec: ferry_core::FileSpec,
    snapshot: ferry_core::Snapshot,
    now: Instant,
) -> ferry_core::FileId {
    let file = engine.add(spec);
    assert_eq!(
        engine.poll_action(now),
        Some(Action::Fingerprint {
            file,
            resumable: true
        })
    );
    engine.handle_fingerprinted(file, Some("the file".into()), now);
    assert_eq!(
        engine.poll_action(now),
        Some(Action::Claim {
            file,
            key: "the file".into()
        })
    );
    engine.handle_claimed(file, Claim::Resume(snapshot), now);
    file
}

/// A presigned URL for `part`, expiring at `expires_secs` (Unix seconds).
pub fn url(part: u32, expires_secs: u64) -> ferry_core::protocol::SignedUrl {
    ferry_core::protocol::SignedUrl {
        url: format!("http://store:9000/b/k?partNumber={part}"),
        headers: Default::default(),
        expires_at: expires_secs,
        expires_in: None,
        form: Default::default(),
    }
}

/// URLs for `parts`, as the companion signs them.
pub fn signed(parts: &[u32], expires_secs: u64) -> Vec<ferry_core::protocol::SignedPart> {
    parts
        .iter()
        .map(|&part| ferry_core::protocol::SignedPart {
            part,
            url: url(part, expires_secs),
        })
        .collect()
}
