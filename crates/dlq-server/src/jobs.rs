//! Replay jobs: started by `POST /api/replays`, run in the background,
//! watched with `GET /api/replays/{job}`.
//!
//! One replay runs at a time: two replays into the same file target would
//! race on its committed length, and two over the same selection would
//! deliver records twice. Jobs live in memory; the store and the audit log
//! are the durable record of what a job did.

use crate::auth::Principal;
use chrono::{DateTime, Utc};
use dlq_core::replay::ReplayReport;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

/// How many finished jobs are remembered.
pub const KEEP_FINISHED: usize = 100;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Running.
    Running,
    /// Finished; every selected record was handled.
    Done,
    /// Stopped by an error; what was settled stays settled, the rest pending.
    Failed,
}

/// A replay job and its progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// The job id.
    pub id: String,
    /// The DLQ replayed from.
    pub dlq: String,
    /// The allow-listed target's name.
    pub target: String,
    /// The filter that selected the records.
    pub filter: String,
    /// The jq fix, if any.
    pub fix: Option<String>,
    /// Who started it.
    pub started_by: Principal,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub status: JobStatus,
    /// Whether it ended (done or failed).
    pub done: bool,
    /// Records selected so far.
    pub selected: u64,
    /// Records delivered and settled.
    pub replayed: u64,
    /// Records the target rejected again (back in the DLQ with `replays + 1`).
    pub failed: u64,
    /// Of those, records parked.
    pub parked: u64,
    /// Records whose fix failed (still pending).
    pub fix_failed: u64,
    /// Fix errors by message.
    pub fix_errors: BTreeMap<String, u64>,
    /// Why it failed.
    pub error: Option<String>,
}

impl Job {
    /// A running job with no progress yet.
    pub fn new(
        dlq: &str,
        target: &str,
        filter: &str,
        fix: Option<&str>,
        started_by: Principal,
    ) -> Self {
        Job {
            id: uuid::Uuid::new_v4().simple().to_string(),
            dlq: dlq.to_owned(),
            target: target.to_owned(),
            filter: filter.to_owned(),
            fix: fix.map(str::to_owned),
            started_by,
            started_at: Utc::now(),
            finished_at: None,
            status: JobStatus::Running,
            done: false,
            selected: 0,
            replayed: 0,
            failed: 0,
            parked: 0,
            fix_failed: 0,
            fix_errors: BTreeMap::new(),
            error: None,
        }
    }

    /// Ends the job with its final report, or an error (keeping the
    /// progress made before it).
    fn end(&mut self, result: Result<&ReplayReport, String>) {
        match result {
            Ok(r) => {
                self.update(r);
                self.status = JobStatus::Done;
            }
            Err(e) => {
                self.status = JobStatus::Failed;
                self.error = Some(e);
            }
        }
        self.done = true;
        self.finished_at = Some(Utc::now());
    }

    fn update(&mut self, r: &ReplayReport) {
        self.selected = r.selected;
        self.replayed = r.replayed;
        self.failed = r.failed_again;
        self.parked = r.parked;
        self.fix_failed = r.fix_failed;
        self.fix_errors = r.fix_errors.clone();
    }
}

/// The jobs of this server.
#[derive(Debug, Default)]
pub struct Jobs {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: BTreeMap<String, Job>,
    order: VecDeque<String>,
    running: Option<String>,
}

impl Jobs {
    /// No jobs.
    pub fn new() -> Self {
        Jobs::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a job as running, unless another one is: then returns
    /// that job's id.
    pub fn start(&self, job: Job) -> Result<Job, String> {
        let mut inner = self.lock();
        if let Some(running) = &inner.running {
            return Err(running.clone());
        }
        inner.running = Some(job.id.clone());
        inner.order.push_back(job.id.clone());
        inner.jobs.insert(job.id.clone(), job.clone());
        while inner.order.len() > KEEP_FINISHED + 1 {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if inner.running.as_deref() == Some(old.as_str()) {
                inner.order.push_back(old);
                break;
            }
            inner.jobs.remove(&old);
        }
        Ok(job)
    }

    /// Records progress.
    pub fn progress(&self, id: &str, report: &ReplayReport) {
        if let Some(job) = self.lock().jobs.get_mut(id) {
            job.update(report);
        }
    }

    /// Ends a job with its final report, or an error (and the progress
    /// made before it).
    pub fn finish(&self, id: &str, result: Result<&ReplayReport, String>) -> Option<Job> {
        let mut inner = self.lock();
        if inner.running.as_deref() == Some(id) {
            inner.running = None;
        }
        let job = inner.jobs.get_mut(id)?;
        job.end(result);
        Some(job.clone())
    }

    /// Runs the work of the running job `id` and ends the job with its
    /// result: its report, its error, or — when `work` panics — the panic's
    /// message as the error. The job never stays `running` after this
    /// returns, so the one-replay slot is free again whatever happened.
    /// `work` gets a progress callback that updates the job.
    ///
    /// `on_end` gets the ended job *before* anyone can see it ended (its
    /// audit entry, a sample of the DLQ sizes): a client that sees the job
    /// `done` finds its end in the audit log. Returns the ended job (`None`
    /// if `id` is unknown).
    pub fn run(
        &self,
        id: &str,
        work: impl FnOnce(&mut dyn FnMut(&ReplayReport)) -> Result<ReplayReport, String>,
        on_end: impl FnOnce(&Job),
    ) -> Option<Job> {
        let mut progress = |r: &ReplayReport| self.progress(id, r);
        // The work runs the store and the target: a panic there is a bug,
        // but it must end this job as failed, not leave it running (and
        // every later replay refused) until a restart. The shared store's
        // lock recovers from poisoning, and what was committed stays so.
        let result = catch_unwind(AssertUnwindSafe(|| work(&mut progress)))
            .unwrap_or_else(|panic| Err(panic_message(panic.as_ref())));
        let Some(mut ended) = self.get(id) else {
            return self.finish(id, result.as_ref().map_err(Clone::clone));
        };
        ended.end(result.as_ref().map_err(Clone::clone));
        if catch_unwind(AssertUnwindSafe(|| on_end(&ended))).is_err() {
            tracing::error!(job = %id, "recording the end of a replay job panicked");
        }
        let mut inner = self.lock();
        if inner.running.as_deref() == Some(id) {
            inner.running = None;
        }
        if let Some(job) = inner.jobs.get_mut(id) {
            *job = ended.clone();
        }
        Some(ended)
    }

    /// One job.
    pub fn get(&self, id: &str) -> Option<Job> {
        self.lock().jobs.get(id).cloned()
    }

    /// Every remembered job, newest first.
    pub fn list(&self) -> Vec<Job> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.jobs.get(id).cloned())
            .collect()
    }
}

/// The error a job ends with when its work panicked.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!(
        "the replay stopped on an internal error (a bug; the server log has details): {what}; \
         records settled before it stay settled, the others stay pending"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn job() -> Job {
        Job::new(
            "dlq.x",
            "out",
            "retryable",
            None,
            Principal {
                role: Role::Operator,
                label: "o".into(),
            },
        )
    }

    #[test]
    fn one_job_runs_at_a_time_and_progress_is_kept() {
        let jobs = Jobs::new();
        let a = jobs.start(job()).expect("first");
        assert_eq!(jobs.start(job()).expect_err("second"), a.id);
        let report = ReplayReport {
            selected: 5,
            replayed: 4,
            failed_again: 1,
            ..ReplayReport::default()
        };
        jobs.progress(&a.id, &report);
        assert_eq!(jobs.get(&a.id).expect("job").replayed, 4);
        let done = jobs.finish(&a.id, Ok(&report)).expect("finished");
        assert!(done.done && done.status == JobStatus::Done && done.failed == 1);
        let b = jobs.start(job()).expect("after the first ended");
        jobs.finish(&b.id, Err("target failed".into()));
        let listed = jobs.list();
        assert_eq!(listed[0].id, b.id);
        assert_eq!(listed[0].status, JobStatus::Failed);
    }

    #[test]
    fn a_job_whose_work_panics_ends_failed_with_the_message_and_frees_the_slot() {
        let jobs = Jobs::new();
        let a = jobs.start(job()).expect("first");
        let mut seen_at_end = None;
        let ended = jobs
            .run(
                &a.id,
                |progress| {
                    progress(&ReplayReport {
                        selected: 3,
                        replayed: 2,
                        ..ReplayReport::default()
                    });
                    panic!("cannot convert float seconds to Duration");
                },
                |job| {
                    // Still running for everyone else while its end is recorded.
                    seen_at_end = Some((job.clone(), jobs.get(&job.id).map(|j| j.status)));
                },
            )
            .expect("ended");
        let (at_end, others_saw) = seen_at_end.expect("on_end ran");
        assert_eq!(at_end, ended, "on_end gets the ended job");
        assert_eq!(others_saw, Some(JobStatus::Running));
        assert_eq!(ended.status, JobStatus::Failed);
        assert!(ended.done && ended.finished_at.is_some());
        let error = ended.error.as_deref().expect("an error");
        assert!(
            error.contains("internal error") && error.contains("cannot convert float seconds"),
            "{error}"
        );
        assert_eq!((ended.selected, ended.replayed), (3, 2), "progress is kept");
        assert_eq!(jobs.get(&a.id).expect("kept").status, JobStatus::Failed);
        let b = jobs.start(job()).expect("the slot is free again");
        let done = jobs
            .run(&b.id, |_| Ok(ReplayReport::default()), |_| {})
            .expect("ended");
        assert_eq!(done.status, JobStatus::Done);
    }

    #[test]
    fn a_job_whose_work_fails_ends_failed_with_the_error() {
        let jobs = Jobs::new();
        let a = jobs.start(job()).expect("first");
        let ended = jobs
            .run(
                &a.id,
                |_| Err("target out: disk full".to_owned()),
                |_| panic!("a bug while recording the end"),
            )
            .expect("ended");
        assert_eq!(ended.status, JobStatus::Failed);
        assert_eq!(ended.error.as_deref(), Some("target out: disk full"));
        assert_eq!(jobs.get(&a.id).expect("kept").status, JobStatus::Failed);
        assert!(jobs.start(job()).is_ok(), "the slot is free, even so");
    }
}
