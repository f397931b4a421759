//! Starting task attempts on their routes and taking in how they ended: retries, fallbacks, approvals and the
//! workflow's `on_failure`/`on_success` handlers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Actor, Done, HANDLER, Internal, Launch, Spawned};
use crate::definition::{Target, Task};
use crate::engine::Event;
use crate::engine::run::Run;
use crate::engine::transitions::{self, Begun, WhenStep};
use crate::state::AttemptState;
use crate::store::AttemptRecord;
use crate::tasks::limits::{DEFAULT_MAX_LOG_SIZE, DEFAULT_MAX_OUTPUT_SIZE};
use crate::tasks::{Attempt, CancelHandle, Ending, LogSink, cancel_pair, when};

/// How long an attempt that has printed nothing keeps the engine's lines about it in memory before they get a
/// file: a person opening the log of a task that runs longer sees no difference, and a quick silent task
/// (most steps of a long chain) costs no file (docs/benchmarks.md).
const HOLD_LOG: Duration = Duration::from_millis(100);

impl Actor {
    pub(super) fn start_task(&mut self, id: &str, index: usize) {
        let Some(run) = self.runs.get_mut(id) else { return };
        let input = run.input_for(index);
        let condition = run.task(index).when.clone();
        let params = run.record.params.clone();
        let slot = run.slot_mut(index);
        slot.record.input = Some(input.clone());
        let Some(condition) = condition else { return self.start_attempt(id, index) };
        // An expression may be slow: it is evaluated off the loop, which hears back with a `Condition`.
        slot.evaluating = true;
        let (told, run_id) = (self.internal.clone(), id.to_string());
        tokio::spawn(async move {
            let result = crate::tasks::budget::run_bounded("`when`", crate::tasks::budget::WHEN_BUDGET, move || {
                when::evaluate(&condition, &input, &params)
            })
            .await;
            let _ = told.send(Internal::Condition { run_id, index, result });
        });
    }

    /// A task's `when` has been evaluated: it runs, is skipped (its input passes on), or fails.
    pub(super) fn condition_decided(&mut self, id: &str, index: usize, result: Result<bool, String>) {
        let now = self.now();
        let Some(run) = self.runs.get_mut(id) else { return };
        let Some(slot) = run.slot_get_mut(index) else { return };
        slot.evaluating = false;
        // A closing engine starts nothing: the next one evaluates the `when` again.
        let step =
            if self.closing.is_some() { WhenStep::Stale } else { transitions::when_answered(run, index, result) };
        match step {
            WhenStep::Stale => return self.settle(id),
            WhenStep::Start => self.start_attempt(id, index),
            WhenStep::Hold => {}
            recorded => {
                let record = &mut run.slot_mut(index).record;
                recorded.record(record, now);
                let record = record.clone();
                self.save_task(&record);
            }
        }
        self.advance(id);
    }

    /// Which executor a route runs on, and the route's own timeout and environment.
    pub(super) fn resolve(&self, route: &str, task: &Task) -> crate::tasks::Route {
        let llm_permits =
            |agent: &str, bound: usize| self.gates.gate(&format!("llm:{agent}"), bound, String::new()).semaphore;
        let routes = crate::tasks::Routes {
            registry: &self.registry,
            embedded: &self.config.executors,
            llm_permits: &llm_permits,
            offering: self.leadership.as_ref().map(|leadership| &leadership.offers as &dyn crate::tasks::Offering),
        };
        crate::tasks::executor_for(route, task, &routes)
    }

    /// Counts a new attempt on the task's record, stores it, then starts it.
    pub(super) fn start_attempt(&mut self, id: &str, index: usize) {
        let now = self.now();
        let Some(run) = self.runs.get_mut(id) else { return };
        let Begun { number, route } = transitions::begin_attempt(run, index, now);
        let task = run.task(index).clone();
        let log_path = self.store.log_path(id, &task.name, number);
        let attempt = AttemptRecord::started(id, &task.name, number, &route, now, log_path);
        let slot = run.slot_mut(index);
        slot.attempt = Some(attempt.clone());
        let task_record = slot.record.clone();
        let input = task_record.input.clone().unwrap_or(Value::Null);
        let params = run.record.params.as_object().cloned().unwrap_or_default();
        let workflow = run.record.workflow.clone();
        self.save_attempt_and_task(Some(attempt), &task_record);
        let launch = Launch { run_id: id, index, number, task: &task, route: &route, input, params, workflow };
        let cancel = self.launch(launch);
        // `launch` reads the actor, so the run is looked up again to keep the handle that stops the attempt.
        if let Some(slot) = self.runs.get_mut(id).and_then(|run| run.slot_get_mut(index)) {
            slot.cancel = Some(cancel);
        }
    }

    /// Starts one attempt in its own task; its ending comes back as a `Done`.
    pub(super) fn launch(&self, launch: Launch) -> CancelHandle {
        let Launch { run_id: id, index, number, task, route, input, params, workflow } = launch;
        let crate::tasks::Route { executor, kind, timeout: route_timeout, env: route_env } = self.resolve(route, task);
        // An offered attempt's secrets are read, and its engine-wide bound applied, where it runs.
        let offered = kind == crate::tasks::route::Kind::Offered;
        let events = self.events.clone();
        let (run_id, task_name) = (id.to_string(), task.name.clone());
        let progressed = self.internal.clone();
        let last_percent = std::sync::atomic::AtomicU32::new(u32::MAX);
        let listener = Arc::new(move |stream, line: &str, progress: Option<crate::tasks::Progress>| {
            let _ = events.send(Event::Log {
                run_id: run_id.clone(),
                task: task_name.clone(),
                attempt: number,
                stream,
                line: line.to_string(),
            });
            // A task may print progress in a tight loop: only a change of a whole percent is passed on, so an
            // attempt sends at most 101 of them into the actor's unbounded channel.
            if let Some(progress) = progress.filter(|progress| {
                let percent = (progress.0 * 100.0).floor() as u32;
                last_percent.swap(percent, Ordering::Relaxed) != percent
            }) {
                let _ = progressed.send(Internal::Progress {
                    run_id: run_id.clone(),
                    index,
                    attempt: number,
                    fraction: progress.0,
                });
                let _ = events.send(Event::Progress {
                    run_id: run_id.clone(),
                    task: task_name.clone(),
                    attempt: number,
                    fraction: progress.0,
                });
            }
        });
        let (cancel_handle, cancel) = cancel_pair();
        let stop = crate::tasks::Stop::new(cancel, task.timeout.or(route_timeout), self.config.clock.clone());
        let done = self.internal.clone();
        let told = self.internal.clone();
        let (spawned_run, spawned_index) = (id.to_string(), index);
        let spawned: crate::tasks::Spawned = Box::new(move |started| {
            let spawned = Spawned { run_id: spawned_run, index: spawned_index, attempt: number, started };
            let _ = told.send(Internal::Spawned(spawned));
        });
        let used = self.internal.clone();
        let (used_run, used_index) = (id.to_string(), index);
        let usage: crate::tasks::UsageReport = Box::new(move |usage| {
            let _ = used.send(Internal::Usage { run_id: used_run, index: used_index, attempt: number, usage });
        });
        let limits = crate::tasks::Limits {
            max_output_size: task.max_output_size.or(self.registry.max_output_size).unwrap_or(DEFAULT_MAX_OUTPUT_SIZE),
            max_log_size: task.max_log_size.or(self.registry.max_log_size).unwrap_or(DEFAULT_MAX_LOG_SIZE),
            ..Default::default()
        };
        let sink = LogSink::create(&self.store.log_path(id, &task.name, number), limits.max_log_size, listener);
        // The registry's `[env]`, under the route's, under the task's; references are read once the attempt runs.
        let mut env = self.registry.env.clone();
        env.extend(route_env);
        env.extend(task.env.clone());
        let api_key_env = match self.registry.agents.get(route).map(|agent| &agent.target) {
            Some(Target::Llm(agent)) => agent.api_key_env.clone(),
            _ => None,
        };
        let attempt = Attempt {
            run_id: id.to_string(),
            workflow,
            task: task.name.clone(),
            action: task.action.clone(),
            number,
            input,
            params,
            env,
            workdir: self.config.workflows_dir.clone(),
            output_file: self.store.work_dir(id).join(format!("{}.{number}.output.json", task.name)),
            log: sink.clone(),
            stop,
            kill_grace: self.config.kill_grace,
            state_id: self.state_id.clone(),
            scheduled_at: self.scheduled_at(id),
            spawned: Some(spawned),
            limits,
            usage: Some(usage),
        };
        let gates = self.gates_for(id, route, offered);
        let run_id = id.to_string();
        let committed = self.start_after_commit();
        tokio::spawn(async move {
            if let Some(committed) = committed
                && committed.await.is_err()
            {
                // The step that launched it was never committed (its leader lost the lease): no process starts.
                let (log_bytes, log_text) = (sink.bytes(), sink.held_text());
                let ending = Ending::Cancelled;
                let _ = done.send(Internal::Done(Done { run_id, index, attempt: number, ending, log_bytes, log_text }));
                return;
            }
            let mut cancel = attempt.stop.cancel();
            let Some(_places) = crate::engine::gates::pass(gates, &mut cancel, &sink).await else {
                let ending = Ending::Cancelled;
                let (log_bytes, log_text) = (sink.bytes(), sink.held_text());
                let _ = done.send(Internal::Done(Done { run_id, index, attempt: number, ending, log_bytes, log_text }));
                return;
            };
            let mut attempt = attempt;
            let output_file = attempt.output_file.clone();
            // Secrets are read now, not when the definition loaded, and live only in this attempt's memory.
            let (unresolved, workdir) = (std::mem::take(&mut attempt.env), attempt.workdir.clone());
            // Only a `${file:…}` reads the disk: anything else is resolved here, without a blocking thread.
            let resolved = if offered {
                Ok(crate::tasks::secrets::Resolved { env: unresolved, ..Default::default() })
            } else if unresolved.values().any(|value| value.starts_with("${file:")) {
                tokio::task::spawn_blocking(move || {
                    crate::tasks::secrets::resolve(&unresolved, &workdir, api_key_env.as_deref())
                })
                .await
                .unwrap_or_else(|error| Err(format!("reading the task's secrets failed: {error}")))
            } else {
                crate::tasks::secrets::resolve(&unresolved, &workdir, api_key_env.as_deref())
            };
            let ending = match resolved {
                Ok(resolved) => {
                    let secrets = resolved.secrets;
                    sink.set_secrets(secrets.clone());
                    for warning in &resolved.warnings {
                        sink.engine_line(warning);
                    }
                    attempt.env = resolved.env;
                    // Polled here, not in a task of its own (a hand-over less per attempt); a panic in an
                    // executor is caught, and ends the engine, not just the attempt.
                    let mut execution = crate::tasks::supervise::execute(&*executor, attempt);
                    let execution = std::future::poll_fn(move |context| {
                        let polled =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execution.as_mut().poll(context)));
                        match polled {
                            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                            Ok(std::task::Poll::Ready(ending)) => std::task::Poll::Ready(Ok(ending)),
                            Err(panic) => std::task::Poll::Ready(Err(panic)),
                        }
                    });
                    tokio::pin!(execution);
                    let ended = tokio::select! {
                        ended = &mut execution => ended,
                        // Long enough for someone to look: its log gets its file (see `LogSink::held_text`).
                        _ = tokio::time::sleep(HOLD_LOG) => {
                            sink.keep_on_disk();
                            execution.await
                        }
                    };
                    match ended {
                        // Masked before the engine sees it: errors, outputs and the alerts made of them.
                        Ok(ending) => secrets.mask_ending(ending),
                        Err(_) => {
                            let reason = format!("an executor panicked running task {} of run {run_id}", index);
                            let _ = done.send(Internal::Fatal(reason));
                            return;
                        }
                    }
                }
                Err(error) => {
                    sink.engine_line(&error);
                    Ending::failed(error)
                }
            };
            // Copying a capped log's tail is file work: off the runtime's threads (a hand-over that costs more
            // than the rest of a short task's ending, so only then). An output a timed-out or cancelled task
            // wrote was never read: it goes too, as it may hold what the task was told in secret.
            if sink.needs_file_work() {
                let finishing = sink.clone();
                let _ = tokio::task::spawn_blocking(move || finishing.finish()).await;
            } else {
                sink.finish();
            }
            let _ = std::fs::remove_file(output_file);
            let (log_bytes, log_text) = (sink.bytes(), sink.held_text());
            let _ = done.send(Internal::Done(Done { run_id, index, attempt: number, ending, log_bytes, log_text }));
        });
        cancel_handle
    }

    /// What an attempt on `route` in run `id` must pass before it starts: the service's or agent's
    /// `max_concurrency`, the workflow's `max_parallel`, the engine's `max_parallel_tasks` (not for an offered
    /// attempt: the engine that claims it has room for it).
    fn gates_for(&self, id: &str, route: &str, offered: bool) -> Vec<crate::engine::gates::Gate> {
        let mut gates = Vec::with_capacity(3);
        let endpoint = self.registry.services.get(route).or_else(|| self.registry.agents.get(route));
        if let Some(bound) = endpoint.and_then(|endpoint| endpoint.max_concurrency) {
            let what = format!("max_concurrency {bound} of {route}");
            gates.push(self.gates.gate(&format!("route:{route}"), bound as usize, what));
        }
        if let Some(workflow) = self.runs.get(id).map(|run| run.workflow.clone())
            && let Some(bound) = workflow.max_parallel
        {
            let what = format!("max_parallel {bound} of workflow {}", workflow.id);
            gates.push(self.gates.gate(&format!("workflow:{}", workflow.id), bound as usize, what));
        }
        if !offered {
            let bound = crate::engine::gates::max_parallel_tasks(&self.registry, self.config.max_parallel);
            gates.push(self.gates.gate("engine", bound, format!("max_parallel_tasks {bound} of the engine")));
        }
        gates
    }

    /// Runs the workflow's `on_failure`/`on_success` task once, with the finished run as its input.
    pub(super) fn start_handler(&mut self, run: &Run, handler: &Task) {
        let id = run.record.id.as_str();
        let route = Run::primary_route(handler);
        let log_path = self.store.log_path(id, &handler.name, 1);
        let record = AttemptRecord::started(id, &handler.name, 1, &route, self.now(), log_path);
        if let Err(error) = self.store.insert_attempt(&record) {
            tracing::error!("storing a handler's attempt failed: {error}");
        }
        self.publish(Event::Attempt(record.clone()));
        let input = json!({
            "run": id,
            "workflow": run.record.workflow,
            "state": run.record.state,
            "error": run.record.error,
            "input": run.record.input,
        });
        let params = run.record.params.as_object().cloned().unwrap_or_default();
        let workflow = run.record.workflow.clone();
        let launch =
            Launch { run_id: id, index: HANDLER, number: 1, task: handler, route: &route, input, params, workflow };
        let cancel = self.launch(launch);
        self.handlers.insert(id.to_string(), (record, cancel));
    }

    /// The attempt's process group and its leader's start time, so that a later engine can stop it; and the
    /// engine that runs it, when another one does.
    pub(super) fn attempt_spawned(&mut self, spawned: Spawned) {
        let Some(run) = self.runs.get_mut(&spawned.run_id) else { return };
        let Some(slot) = run.slot_get_mut(spawned.index) else { return };
        let Some(attempt) = slot.attempt.as_mut().filter(|attempt| attempt.attempt == spawned.attempt) else { return };
        if attempt.state != AttemptState::Running {
            return;
        }
        let started = spawned.started;
        if started.pid.is_some() {
            attempt.pid = started.pid;
            attempt.pid_start = started.pid_start;
        }
        if started.engine.is_some() {
            attempt.engine = started.engine;
        }
        self.keep_unsaved(spawned.run_id, spawned.index);
    }

    /// The attempt's last reported progress; like its process group, it is stored with the next step's writes
    /// (an attached console reads it from there).
    pub(super) fn attempt_progressed(&mut self, run_id: String, index: usize, number: u32, fraction: f64) {
        let Some(run) = self.runs.get_mut(&run_id) else { return };
        let Some(slot) = run.slot_get_mut(index) else { return };
        let Some(attempt) = slot.attempt.as_mut().filter(|attempt| attempt.attempt == number) else { return };
        if attempt.state != AttemptState::Running || attempt.progress == Some(fraction) {
            return;
        }
        attempt.progress = Some(fraction);
        self.keep_unsaved(run_id, index);
    }

    /// The tokens an LLM agent's attempt used, stored with the next step's writes.
    pub(super) fn attempt_used(&mut self, run_id: String, index: usize, number: u32, usage: crate::tasks::Usage) {
        let Some(run) = self.runs.get_mut(&run_id) else { return };
        let Some(slot) = run.slot_get_mut(index) else { return };
        let Some(attempt) = slot.attempt.as_mut().filter(|attempt| attempt.attempt == number) else { return };
        attempt.prompt_tokens = Some(usage.prompt_tokens);
        attempt.completion_tokens = Some(usage.completion_tokens);
        self.keep_unsaved(run_id, index);
    }

    /// Notes an attempt to be stored with the next step's writes (once, however often it changed).
    fn keep_unsaved(&mut self, run_id: String, index: usize) {
        if !self.unsaved_attempts.iter().any(|(run, at)| *run == run_id && *at == index) {
            self.unsaved_attempts.push((run_id, index));
        }
    }

    /// Stores the process groups and progress learnt since the last step, with this step's writes.
    pub(super) fn save_attempts(&mut self) {
        for (run, index) in std::mem::take(&mut self.unsaved_attempts) {
            let Some(attempt) = self.runs.get(&run).and_then(|run| run.slots().get(index)?.attempt.as_ref()) else {
                continue;
            };
            if attempt.state == AttemptState::Running
                && let Err(error) = self.store.insert_attempt(attempt)
            {
                tracing::debug!("storing attempt {} of {} failed: {error}", attempt.attempt, attempt.task);
            }
        }
    }
}
