//! What the live triggers remember between steps — scheduled fires waiting behind a run, files settling —
//! and the rules that turn a fire or a file event into what the actor must do. The actor owns one
//! `Scheduler`, keeps the timers and the store, and applies the decisions returned here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::definition::{Catchup, Overlap, Trigger, Workflow};
use crate::store::timestamp;
use crate::trigger::files::{self, Admit, FilePattern, Fingerprint};

/// A fire further in the past than this (the machine slept, the clock jumped) is not replayed.
const TOO_LATE: chrono::Duration = chrono::Duration::minutes(1);
/// `catchup = "all"` runs at most this many missed fires.
pub const CATCHUP_LIMIT: usize = 100;
/// Fires waiting behind an active run (`overlap = "queue"`, catch-up): past this, further fires are skipped,
/// so a run that never ends cannot grow the queue without bound.
pub const QUEUE_LIMIT: usize = CATCHUP_LIMIT;

#[derive(Default)]
pub struct Scheduler {
    /// Workflows whose triggers are live.
    activations: HashMap<String, Activation>,
    /// Files seen under a watched folder, with what they looked like and when, until they settle.
    pending_files: HashMap<(String, PathBuf), (Fingerprint, DateTime<Utc>)>,
}

/// A workflow whose trigger is live.
#[derive(Default)]
pub struct Activation {
    /// Scheduled fires waiting for the active run to end (`overlap = "queue"`, catch-up).
    queue: VecDeque<DateTime<Utc>>,
    /// Set once a skipped fire has raised an alert; cleared when a fire starts a run again.
    skip_alerted: bool,
    files: Option<FileTrigger>,
}

impl Activation {
    /// A schedule, with the fires a previous engine left queued behind a run.
    pub fn schedule(queued: Vec<DateTime<Utc>>) -> Activation {
        Activation { queue: queued.into(), ..Default::default() }
    }

    /// A file trigger; it watches for as long as `watcher` lives.
    pub fn files(pattern: FilePattern, settle: Duration, watcher: notify::RecommendedWatcher) -> Activation {
        let files = FileTrigger { pattern, settle, refused: HashSet::new(), _watcher: watcher };
        Activation { files: Some(files), ..Default::default() }
    }
}

struct FileTrigger {
    pattern: FilePattern,
    settle: Duration,
    /// Links to outside the watched folder already alerted on: one alert per link, however many events it sends.
    refused: HashSet<PathBuf>,
    _watcher: notify::RecommendedWatcher,
}

/// What a fire of a scheduled workflow comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Fire {
    /// Start a run; `outcome` is what the fire records once it has.
    Start { outcome: &'static str },
    /// Cancel the workflow's active runs, then start a new one (`overlap = "cancel_previous"`).
    ReplaceActive,
    /// Queued behind the active run.
    Queued,
    /// Not run; `alert` for the first skip since a fire last started a run.
    Skipped { outcome: String, alert: bool },
}

/// What a file event or a settle check comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum FileStep {
    /// Check at `at` whether the file has stopped changing.
    SettleAt { workflow: String, path: PathBuf, at: DateTime<Utc> },
    /// A link leads outside the watched folder: an operator hears of it once per link.
    Refused { workflow: String, message: String },
    /// The file has stayed the same for its settle interval: its run may start.
    Arrived { workflow: String, path: PathBuf, file: Fingerprint },
}

/// The fires missed while no engine ran that `catchup` runs, oldest first, and a warning when there were more.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CatchUp {
    pub fires: Vec<DateTime<Utc>>,
    pub warning: Option<String>,
}

impl Scheduler {
    pub fn activate(&mut self, id: &str, activation: Activation) {
        self.activations.insert(id.to_string(), activation);
    }

    /// Forgets the workflow's trigger and its settling files; its timers are the actor's to drop.
    pub fn deactivate(&mut self, id: &str) {
        self.activations.remove(id);
        self.pending_files.retain(|(workflow, _), _| workflow != id);
    }

    pub fn is_active(&self, id: &str) -> bool {
        self.activations.contains_key(id)
    }

    /// A scheduled instant has come, with what the actor knows of the workflow's runs; `None` when its
    /// trigger is not live. A fire answered `Queued` is on the queue already.
    pub fn fire(
        &mut self,
        workflow: &Workflow,
        scheduled: DateTime<Utc>,
        paused: bool,
        active: usize,
        catching_up: bool,
    ) -> Option<Fire> {
        let activation = self.activations.get_mut(&workflow.id)?;
        let fire = if paused {
            Fire::Skipped { outcome: "skipped: the workflow is paused".into(), alert: false }
        } else if active > 0 && (catching_up || workflow.overlap == Overlap::Queue) {
            if activation.queue.len() < QUEUE_LIMIT {
                activation.queue.push_back(scheduled);
                Fire::Queued
            } else {
                Fire::Skipped {
                    outcome: format!("skipped: {QUEUE_LIMIT} fires already wait for the active run"),
                    alert: false,
                }
            }
        } else if active == 0 {
            Fire::Start { outcome: if catching_up { "catch-up" } else { "started" } }
        } else {
            match workflow.overlap {
                Overlap::Skip | Overlap::Queue => {
                    Fire::Skipped { outcome: "skipped: a run is still active (overlap = skip)".into(), alert: false }
                }
                Overlap::CancelPrevious => Fire::ReplaceActive,
                Overlap::Allow if active < workflow.max_active_runs as usize => Fire::Start { outcome: "started" },
                Overlap::Allow => Fire::Skipped {
                    outcome: format!("skipped: max_active_runs ({}) reached", workflow.max_active_runs),
                    alert: false,
                },
            }
        };
        Some(match fire {
            Fire::Skipped { outcome, .. } => {
                // One alert until a fire starts a run again: a long run must not raise one per fire.
                let alert = !activation.skip_alerted;
                activation.skip_alerted = true;
                Fire::Skipped { outcome, alert }
            }
            other => {
                activation.skip_alerted = false;
                other
            }
        })
    }

    /// The oldest fire waiting behind a run of `id`, taken off its queue.
    pub fn next_queued(&mut self, id: &str) -> Option<DateTime<Utc>> {
        self.activations.get_mut(id)?.queue.pop_front()
    }

    /// Workflows watching for files, for a look at every watched folder again.
    pub fn file_workflows(&self) -> Vec<String> {
        self.activations.iter().filter(|(_, a)| a.files.is_some()).map(|(id, _)| id.clone()).collect()
    }

    /// The files under `id`'s watched folder now (none for other triggers).
    pub fn existing_files(&self, id: &str) -> Vec<PathBuf> {
        self.activations.get(id).and_then(|a| a.files.as_ref()).map(|t| t.pattern.existing()).unwrap_or_default()
    }

    /// Something happened to `path`: it settles for every file trigger it matches. Paths found when watching
    /// starts come here too, so one rule (`FilePattern::admit`) decides for both.
    pub fn file_seen(&mut self, path: &Path, now: DateTime<Utc>) -> Vec<FileStep> {
        let matching: Vec<(String, Duration, Admit)> = self
            .activations
            .iter()
            .filter_map(|(id, activation)| {
                let trigger = activation.files.as_ref()?;
                trigger.pattern.matches(path).then(|| (id.clone(), trigger.settle, trigger.pattern.admit(path)))
            })
            .collect();
        let mut steps = Vec::new();
        for (id, settle, admit) in matching {
            let key = (id.clone(), path.to_path_buf());
            match self.admitted(&id, path, admit, &mut steps) {
                Some(fingerprint) => {
                    // A file written in many chunks sends many events: one timer per file is enough, as
                    // `settle_file` waits again from the latest change it finds.
                    if self.pending_files.insert(key, (fingerprint, now)).is_none() {
                        let at = crate::clock::later(now, settle);
                        steps.push(FileStep::SettleAt { workflow: id, path: path.to_path_buf(), at });
                    }
                }
                None => {
                    self.pending_files.remove(&key);
                }
            }
        }
        steps
    }

    /// A settle interval has passed: the file arrived if it has stayed the same all along.
    pub fn settle_file(&mut self, id: &str, path: &Path, now: DateTime<Utc>) -> Vec<FileStep> {
        let key = (id.to_string(), path.to_path_buf());
        let Some(&(seen, since)) = self.pending_files.get(&key) else { return Vec::new() };
        let Some(trigger) = self.activations.get(id).and_then(|a| a.files.as_ref()) else { return Vec::new() };
        // Asked again, not just re-measured: a link may have been pointed elsewhere while the file settled.
        let (settle_for, admit) = (trigger.settle, trigger.pattern.admit(path));
        let settle = chrono::Duration::from_std(settle_for).unwrap_or(chrono::Duration::MAX);
        let mut steps = Vec::new();
        let (workflow, path) = (id.to_string(), path.to_path_buf());
        match self.admitted(id, &path, admit, &mut steps) {
            None => {
                self.pending_files.remove(&key);
            }
            Some(current) if current != seen => {
                self.pending_files.insert(key, (current, now));
                steps.push(FileStep::SettleAt { workflow, path, at: crate::clock::later(now, settle_for) });
            }
            Some(_) if now.signed_duration_since(since) < settle => {
                steps.push(FileStep::SettleAt { workflow, path, at: crate::clock::later(since, settle_for) });
            }
            Some(file) => {
                self.pending_files.remove(&key);
                steps.push(FileStep::Arrived { workflow, path, file });
            }
        }
        steps
    }

    /// The fingerprint of an admitted file; a link to outside the watched folder is refused, said once.
    fn admitted(&mut self, id: &str, path: &Path, admit: Admit, steps: &mut Vec<FileStep>) -> Option<Fingerprint> {
        let trigger = self.activations.get_mut(id).and_then(|a| a.files.as_mut())?;
        let target = match admit {
            Admit::File(fingerprint) => {
                trigger.refused.remove(path);
                return Some(fingerprint);
            }
            Admit::No => {
                // Gone or no longer a link: if it comes back pointing outside, that is news again.
                trigger.refused.remove(path);
                return None;
            }
            Admit::Outside(target) => target,
        };
        if trigger.refused.insert(path.to_path_buf()) {
            let message = format!(
                "{id}: {} is a symbolic link to {}, outside the watched folder {}: it is not processed (move or copy the file into the folder instead)",
                files::file_text(path),
                files::file_text(&target),
                files::file_text(&trigger.pattern.root)
            );
            tracing::warn!("{message}");
            steps.push(FileStep::Refused { workflow: id.to_string(), message });
        }
        None
    }
}

/// The first fire after `after` and the instant its timer goes off (later by up to the workflow's jitter,
/// `jitter` in 0..1). A fire long past is not replayed: the next one after `now` is taken instead.
pub fn next_fire(
    workflow: &Workflow,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let Trigger::Schedule(schedule) = &workflow.trigger else { return None };
    let mut next = schedule.next_after(after)?;
    if now.checked_sub_signed(TOO_LATE).is_some_and(|limit| next < limit) {
        tracing::warn!(
            "{}: the fire at {} is long past (was the machine asleep?); not replaying it",
            workflow.id,
            timestamp(next)
        );
        next = schedule.next_after(now)?;
    }
    let jitter = workflow.jitter.map_or(Duration::ZERO, |most| most.mul_f64(jitter));
    Some((crate::clock::later(next, jitter), next))
}

/// The fires missed between `since` and `now` that the workflow's `catchup` policy runs.
pub fn catch_up(workflow: &Workflow, since: DateTime<Utc>, now: DateTime<Utc>) -> CatchUp {
    let Trigger::Schedule(schedule) = &workflow.trigger else { return CatchUp::default() };
    let limit = match workflow.catchup {
        Catchup::None => 0,
        Catchup::Latest => 1,
        Catchup::All => CATCHUP_LIMIT,
    };
    let (missed, total) = schedule.missed(since, now, limit.max(1));
    if total == 0 {
        return CatchUp::default();
    }
    if workflow.catchup == Catchup::None {
        tracing::info!("{}: fires missed while no engine ran are not run (catchup = none)", workflow.id);
        return CatchUp::default();
    }
    let warning = (workflow.catchup == Catchup::All && total > CATCHUP_LIMIT).then(|| {
        format!(
            "{} missed more than {CATCHUP_LIMIT} scheduled fires while no engine ran; running the newest {CATCHUP_LIMIT} (catchup = all)",
            workflow.id
        )
    });
    CatchUp { fires: missed, warning }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn seconds(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    /// An hourly workflow with the given top-level options (`overlap`, `catchup`, `jitter` …).
    fn hourly(options: &str) -> Workflow {
        let source = format!(
            "id = \"W\"\n{options}\n[trigger]\ntype = \"schedule\"\ncron = \"0 * * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n"
        );
        crate::definition::parse_workflow(Path::new("w.toml"), &source, &Default::default()).expect("valid")
    }

    fn active(workflow: &Workflow) -> Scheduler {
        let mut scheduler = Scheduler::default();
        scheduler.activate(&workflow.id, Activation::schedule(Vec::new()));
        scheduler
    }

    #[test]
    fn a_fire_starts_a_run_when_none_is_active_and_follows_overlap_otherwise() {
        let skip = hourly("overlap = \"skip\"");
        let mut scheduler = active(&skip);
        assert_eq!(scheduler.fire(&skip, noon(), false, 0, false), Some(Fire::Start { outcome: "started" }));
        let skipped = "skipped: a run is still active (overlap = skip)".to_string();
        assert_eq!(
            scheduler.fire(&skip, noon(), false, 1, false),
            Some(Fire::Skipped { outcome: skipped, alert: true })
        );

        let replace = hourly("overlap = \"cancel_previous\"");
        assert_eq!(active(&replace).fire(&replace, noon(), false, 1, false), Some(Fire::ReplaceActive));

        let allow = hourly("overlap = \"allow\"\nmax_active_runs = 2");
        let mut scheduler = active(&allow);
        assert_eq!(scheduler.fire(&allow, noon(), false, 1, false), Some(Fire::Start { outcome: "started" }));
        let full = "skipped: max_active_runs (2) reached".to_string();
        assert_eq!(scheduler.fire(&allow, noon(), false, 2, false), Some(Fire::Skipped { outcome: full, alert: true }));

        let paused = "skipped: the workflow is paused".to_string();
        assert_eq!(
            active(&allow).fire(&allow, noon(), true, 0, false),
            Some(Fire::Skipped { outcome: paused, alert: true })
        );
        assert_eq!(Scheduler::default().fire(&allow, noon(), false, 0, false), None, "not live: nothing to decide");
    }

    #[test]
    fn queued_fires_wait_in_order_up_to_the_limit() {
        let queue = hourly("overlap = \"queue\"");
        let mut scheduler = active(&queue);
        for hour in 0..QUEUE_LIMIT as i64 {
            let at = noon() + chrono::Duration::hours(hour);
            assert_eq!(scheduler.fire(&queue, at, false, 1, false), Some(Fire::Queued));
        }
        let Some(Fire::Skipped { outcome, .. }) = scheduler.fire(&queue, noon(), false, 1, false) else {
            panic!("the queue is full")
        };
        assert_eq!(outcome, format!("skipped: {QUEUE_LIMIT} fires already wait for the active run"));
        assert_eq!(scheduler.next_queued("W"), Some(noon()));
        assert_eq!(scheduler.next_queued("W"), Some(noon() + chrono::Duration::hours(1)));

        let skip = hourly("overlap = \"skip\"");
        let mut catching_up = active(&skip);
        assert_eq!(catching_up.fire(&skip, noon(), false, 1, true), Some(Fire::Queued), "catch-up always queues");
        assert_eq!(catching_up.fire(&skip, noon(), false, 0, true), Some(Fire::Start { outcome: "catch-up" }));
    }

    #[test]
    fn skipped_fires_alert_once_until_a_fire_starts_a_run_again() {
        let skip = hourly("overlap = \"skip\"");
        let mut scheduler = active(&skip);
        let alerts = |fire: Option<Fire>| matches!(fire, Some(Fire::Skipped { alert: true, .. }));
        assert!(alerts(scheduler.fire(&skip, noon(), false, 1, false)));
        assert!(!alerts(scheduler.fire(&skip, noon(), false, 1, false)));
        scheduler.fire(&skip, noon(), false, 0, false);
        assert!(alerts(scheduler.fire(&skip, noon(), false, 1, false)));
    }

    #[test]
    fn the_next_fire_comes_after_its_instant_plus_jitter_and_a_long_past_one_is_not_replayed() {
        let jittered = hourly("jitter = \"10m\"");
        let one = Utc.with_ymd_and_hms(2026, 1, 1, 13, 0, 0).unwrap();
        assert_eq!(next_fire(&jittered, noon(), noon(), 0.5), Some((one + chrono::Duration::minutes(5), one)));
        let late = noon() + chrono::Duration::hours(5) + chrono::Duration::minutes(30);
        let next = Utc.with_ymd_and_hms(2026, 1, 1, 18, 0, 0).unwrap();
        assert_eq!(next_fire(&hourly(""), noon(), late, 0.0), Some((next, next)));
    }

    #[test]
    fn catch_up_runs_what_the_policy_allows_of_the_missed_fires() {
        let since = noon() - chrono::Duration::hours(3) - chrono::Duration::minutes(30);
        let hours = |back: &[i64]| back.iter().map(|h| noon() - chrono::Duration::hours(*h)).collect::<Vec<_>>();
        assert_eq!(catch_up(&hourly("catchup = \"none\""), since, noon()), CatchUp::default());
        assert_eq!(catch_up(&hourly("catchup = \"latest\""), since, noon()).fires, hours(&[0]));
        assert_eq!(
            catch_up(&hourly("catchup = \"all\""), since, noon()),
            CatchUp { fires: hours(&[3, 2, 1, 0]), warning: None }
        );
        let long_ago = noon() - chrono::Duration::hours(200);
        let many = catch_up(&hourly("catchup = \"all\""), long_ago, noon());
        assert_eq!(many.fires.len(), CATCHUP_LIMIT);
        assert!(many.warning.is_some_and(|warning| warning.contains("running the newest 100")));
    }

    /// A scheduler watching `dir/*.csv`, settling after 5 s; the watcher is real (and unused here).
    fn watching(dir: &Path) -> Scheduler {
        let pattern = FilePattern::new("*.csv", dir).unwrap();
        let watcher = files::watch(dir, false, |_| {}).unwrap();
        let mut scheduler = Scheduler::default();
        scheduler.activate("W", Activation::files(pattern, Duration::from_secs(5), watcher));
        scheduler
    }

    #[test]
    fn a_file_arrives_once_it_has_stayed_the_same_for_its_settle_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, "1").unwrap();
        let mut scheduler = watching(dir.path());
        let settle_at = |at| vec![FileStep::SettleAt { workflow: "W".into(), path: path.clone(), at }];
        assert_eq!(scheduler.file_seen(&path, noon()), settle_at(noon() + seconds(5)));
        assert_eq!(scheduler.file_seen(&path, noon() + seconds(1)), vec![], "one timer per settling file");
        assert_eq!(scheduler.file_seen(&dir.path().join("b.txt"), noon()), vec![], "not a match");

        std::fs::write(&path, "12").unwrap();
        assert_eq!(scheduler.settle_file("W", &path, noon() + seconds(5)), settle_at(noon() + seconds(10)), "it grew");
        assert_eq!(scheduler.settle_file("W", &path, noon() + seconds(7)), settle_at(noon() + seconds(10)), "too soon");
        let file = files::fingerprint(&path).unwrap();
        assert_eq!(
            scheduler.settle_file("W", &path, noon() + seconds(10)),
            vec![FileStep::Arrived { workflow: "W".into(), path: path.clone(), file }]
        );
        assert_eq!(scheduler.settle_file("W", &path, noon() + seconds(20)), vec![], "arrived once");
    }

    #[test]
    fn a_link_leading_outside_the_watched_folder_is_refused_once() {
        let (dir, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let secret = outside.path().join("secret.csv");
        std::fs::write(&secret, "x").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let mut scheduler = watching(dir.path());
        let steps = scheduler.file_seen(&link, noon());
        assert!(
            matches!(&steps[..], [FileStep::Refused { message, .. }] if message.contains("outside the watched folder"))
        );
        assert_eq!(scheduler.file_seen(&link, noon()), vec![], "said once");
        scheduler.deactivate("W");
        assert_eq!(scheduler.file_workflows(), Vec::<String>::new());
    }
}
