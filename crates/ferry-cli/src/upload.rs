//! `ferry upload PATH...`: files and folders through the companion, with progress bars (one per
//! running file and a total), resume across runs, and exit codes for scripts.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use ferry_core::{Engine, FileId, FileState, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::Client;
use crate::driver::{Driver, Report, Source, Transfer};
use crate::state::StateFile;

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Files and folders to upload; folders are walked recursively (symbolic links to folders
    /// are not followed).
    #[arg(required = true)]
    paths: Vec<PathBuf>,

    #[command(flatten)]
    client: Client,

    /// The resume state file (default: $XDG_STATE_HOME/ferry/uploads.json).
    #[arg(long, env = "FERRY_STATE")]
    state: Option<PathBuf>,

    /// One JSON object per line on stdout for every event (part, resumed, done, failed), and
    /// no progress bars: for scripts.
    #[arg(long)]
    json: bool,
}

/// What the user named, as files to upload; a path that does not exist is an error.
fn collect(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Transfer)>, String> {
    let mut found = Vec::new();
    for path in paths {
        let metadata =
            std::fs::metadata(path).map_err(|err| format!("{}: {err}", path.display()))?;
        if metadata.is_dir() {
            walk(path, path, &mut found)?;
        } else {
            found.push((path.clone(), transfer(path, None, &metadata)));
        }
    }
    Ok(found)
}

fn walk(root: &Path, folder: &Path, found: &mut Vec<(PathBuf, Transfer)>) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(folder)
        .map_err(|err| format!("{}: {err}", folder.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(root, &path, found)?;
        } else if let Ok(metadata) = std::fs::metadata(&path)
            && metadata.is_file()
        {
            let relative = path.strip_prefix(root).ok().map(Path::to_path_buf);
            found.push((path.clone(), transfer(&path, relative, &metadata)));
        }
    }
    Ok(())
}

fn transfer(path: &Path, relative: Option<PathBuf>, metadata: &std::fs::Metadata) -> Transfer {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |name| name.to_string_lossy().into_owned());
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map(|since| since.as_secs_f64());
    // A file from a folder keeps where it was in it, when S3 metadata can carry that.
    let metadata_of_path = relative
        .and_then(|relative| relative.to_str().map(str::to_owned))
        .filter(|relative| {
            relative.len() <= 1024 && relative.bytes().all(|b| (0x20..0x7f).contains(&b))
        })
        .map(|relative| ("path".to_owned(), relative));
    Transfer {
        content_type: mime_guess::from_path(path)
            .first_or_octet_stream()
            .essence_str()
            .to_owned(),
        name,
        size: metadata.len(),
        source: Source::Path(path.to_path_buf()),
        modified,
        metadata: metadata_of_path.into_iter().collect(),
    }
}

/// Progress bars on stderr, drawn only on a terminal and never with `--json`.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    files: HashMap<FileId, ProgressBar>,
    file_style: ProgressStyle,
}

impl Bars {
    fn new(total_bytes: u64, target: ProgressDrawTarget) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let total = multi.add(ProgressBar::new(total_bytes));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        total.set_prefix("total");
        let file_style = ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        Self {
            multi,
            total,
            files: HashMap::new(),
            file_style,
        }
    }

    /// The bar of a file on its way (none while it waits in the queue).
    fn show(&mut self, file: FileId, name: &str, progress: &Progress) {
        if matches!(progress.state, FileState::Queued) {
            return;
        }
        let bar = self.files.entry(file).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(progress.size));
            bar.set_style(self.file_style.clone());
            bar.set_prefix(short(name));
            bar
        });
        bar.set_position(progress.loaded());
        bar.set_message(match (progress.waiting, progress.retries) {
            (true, _) => "waiting for the network".to_owned(),
            (false, 0) => String::new(),
            (false, 1) => "1 retry".to_owned(),
            (false, retries) => format!("{retries} retries"),
        });
    }

    fn finish_file(&mut self, file: FileId) {
        if let Some(bar) = self.files.remove(&file) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    /// Prints a line above the bars (or plainly, when they are hidden).
    fn println(&self, line: &str) {
        if self.multi.is_hidden() {
            println!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }
}

/// The last 12 characters of a name, for a bar's prefix.
fn short(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= 12 {
        name.to_owned()
    } else {
        let tail: String = chars[chars.len() - 11..].iter().collect();
        format!("…{tail}")
    }
}

/// What the user sees: the bars, a line per event (or JSON lines), and the counts.
struct Ui {
    bars: Bars,
    /// Each add's path and size.
    paths: BTreeMap<FileId, (String, u64)>,
    json: bool,
    stored: usize,
    failed: usize,
    /// Bytes of the files that ended, for the total bar.
    ended_bytes: u64,
}

impl Ui {
    fn path_of(&self, file: FileId) -> &str {
        self.paths.get(&file).map_or("?", |(path, _)| path.as_str())
    }

    fn tick(&mut self, engine: &Engine) {
        let mut loaded = self.ended_bytes;
        for (&file, (path, _)) in &self.paths {
            if let Some(progress) = engine.progress(file) {
                loaded += progress.loaded();
                self.bars.show(file, path, &progress);
            }
        }
        self.bars.total.set_position(loaded);
    }

    fn report(&mut self, told: Report) {
        let event = match told {
            Report::Part { file, part } => {
                json!({"event": "part", "path": self.path_of(file), "part": part})
            }
            Report::Resumed { file, parts_kept } => {
                if !self.json {
                    let line = format!(
                        "resuming {}: {parts_kept} parts already stored",
                        self.path_of(file)
                    );
                    self.bars.println(&line);
                }
                json!({"event": "resumed", "path": self.path_of(file), "partsKept": parts_kept})
            }
            Report::Waiting { file, waiting } => {
                json!({"event": "waiting", "path": self.path_of(file), "waiting": waiting})
            }
            Report::Done { file, object } => {
                self.stored += 1;
                self.end(file);
                if !self.json {
                    let line = format!(
                        "stored {} as {} ({} bytes)",
                        self.path_of(file),
                        object.key,
                        object.size
                    );
                    self.bars.println(&line);
                }
                json!({"event": "done", "path": self.path_of(file), "key": object.key,
                       "size": object.size, "etag": object.etag, "location": object.location,
                       "checksum": object.checksum})
            }
            Report::Failed { file, error } => {
                self.failed += 1;
                self.end(file);
                if !self.json {
                    eprintln!("ferry: {}: {error} ({})", self.path_of(file), error.code());
                }
                json!({"event": "failed", "path": self.path_of(file), "code": error.code(),
                       "message": error.to_string()})
            }
        };
        if self.json {
            println!("{event}");
        }
    }

    fn end(&mut self, file: FileId) {
        self.ended_bytes += self.paths.get(&file).map_or(0, |(_, size)| *size);
        self.bars.finish_file(file);
    }
}

pub async fn run(args: UploadArgs) -> ExitCode {
    let found = match collect(&args.paths) {
        Ok(found) if !found.is_empty() => found,
        Ok(_) => {
            eprintln!("ferry: no files to upload");
            return ExitCode::from(2);
        }
        Err(message) => {
            eprintln!("ferry: {message}");
            return ExitCode::from(2);
        }
    };
    let state = StateFile::open(args.state.clone().unwrap_or_else(crate::default_state_path));
    let mut driver = Driver::new(
        args.client.engine_config(),
        args.client.connection(),
        Some(state),
    );
    let total_bytes = found.iter().map(|(_, transfer)| transfer.size).sum();
    let mut paths = BTreeMap::new();
    for (path, transfer) in found {
        let size = transfer.size;
        paths.insert(driver.add(transfer), (path.display().to_string(), size));
    }
    let ui = RefCell::new(Ui {
        bars: Bars::new(
            total_bytes,
            if !args.json && std::io::stderr().is_terminal() {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        ),
        paths,
        json: args.json,
        stored: 0,
        failed: 0,
        ended_bytes: 0,
    });
    let started = std::time::Instant::now();
    let interrupted = tokio::select! {
        () = driver.run(
            |_, told| ui.borrow_mut().report(told),
            Duration::from_millis(100),
            |engine| ui.borrow_mut().tick(engine),
        ) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    // Running PUTs stop here; the state file already holds what a second run needs.
    drop(driver);
    let ui = ui.into_inner();
    ui.bars.total.finish_and_clear();
    if interrupted {
        if ui.json {
            println!("{}", json!({"event": "interrupted"}));
        }
        eprintln!("ferry: interrupted; run the same command again to resume");
        return ExitCode::from(130);
    }
    if !ui.json {
        let elapsed = started.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "{} stored, {} failed, {} in {elapsed:.1} s ({}/s)",
            ui.stored,
            ui.failed,
            indicatif::BinaryBytes(total_bytes),
            indicatif::BinaryBytes((total_bytes as f64 / elapsed) as u64)
        );
    }
    if ui.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use indicatif::InMemoryTerm;

    use super::*;

    fn progress(state: FileState, size: u64, confirmed: u64, retries: u32) -> Progress {
        Progress {
            state,
            paused: false,
            size,
            confirmed,
            in_flight: 0,
            retries,
            fallback: false,
            waiting: false,
        }
    }

    /// What a terminal shows: a bar per running file with its speed, ETA and state, none for a
    /// queued one, and the total; a finished file's bar goes away.
    #[test]
    fn a_bar_per_running_file_and_the_total() {
        let term = InMemoryTerm::new(8, 160);
        let mut bars = Bars::new(300, ProgressDrawTarget::term_like(Box::new(term.clone())));
        let (first, second, queued) = (FileId(1), FileId(2), FileId(3));
        bars.show(
            first,
            "holiday.mov",
            &progress(FileState::Uploading, 100, 40, 0),
        );
        bars.show(
            second,
            "a-rather-long-name.bin",
            &progress(FileState::Uploading, 100, 10, 1),
        );
        bars.show(queued, "later.txt", &progress(FileState::Queued, 100, 0, 0));
        bars.total.set_position(50);
        let shown = term.contents();
        let rows: Vec<&str> = shown.lines().filter(|row| !row.trim().is_empty()).collect();
        assert_eq!(rows.len(), 3, "{shown}");
        assert!(rows[0].trim_start().starts_with("total ["), "{shown}");
        assert!(rows[0].contains("50 B/300 B"), "{shown}");
        assert!(
            rows[1].contains("holiday.mov") && rows[1].contains("40 B/100 B"),
            "{shown}"
        );
        assert!(
            rows[2].contains("…ng-name.bin") && rows[2].ends_with("1 retry"),
            "{shown}"
        );
        for row in &rows {
            assert!(row.contains("/s") && row.contains("ETA "), "{row}");
        }
        assert!(!shown.contains("later.txt"), "{shown}");

        bars.finish_file(first);
        let shown = term.contents();
        assert!(!shown.contains("holiday.mov"), "{shown}");
        assert!(shown.contains("…ng-name.bin"), "{shown}");
    }
}
