//! Engine benchmarks (run with `cargo bench --bench engine`; figures are printed, never asserted):
//! - per-task overhead of a 1,000-task chain of no-op in-process tasks, store on;
//! - 200 tasks that each spawn /bin/true, against spawning /bin/true 200 times directly;
//! - peak memory of the process.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::definition::load_folder;
use conveyor::engine::{Command, Engine, EngineConfig, Event};
use conveyor::state::RunState;
use conveyor::tasks::{Attempt, Ending, Execution, Executor};

struct Noop;

impl Executor for Noop {
    fn execute(&self, attempt: Attempt) -> Execution {
        Box::pin(async move { Ending::Succeeded { output: attempt.input } })
    }
}

fn chain(id: &str, count: usize, task: &str) -> String {
    let mut text = format!("id = \"{id}\"\nkeep_runs = 100\n");
    for index in 0..count {
        text.push_str(&format!("[[tasks]]\nname = \"T{index}\"\n{task}\n"));
    }
    text
}

async fn run_once(engine: &Engine, workflow: &str) -> Duration {
    let mut events = engine.subscribe();
    let started = Instant::now();
    let reply =
        engine.send(Command::Trigger { workflow: workflow.into(), input: None, params: Default::default() }).await;
    let run = reply.expect("the run starts").run.unwrap();
    loop {
        match events.recv().await {
            Ok(Event::Run(record)) if record.id == run && record.state.is_finished() => {
                assert_eq!(record.state, RunState::Succeeded, "{:?}", record.error);
                return started.elapsed();
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(error) => panic!("{error}"),
        }
    }
}

fn peak_memory_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn direct_spawns(count: usize) -> Duration {
    let started = Instant::now();
    for _ in 0..count {
        let status = std::process::Command::new("/bin/true").status().expect("/bin/true runs");
        assert!(status.success());
    }
    started.elapsed()
}

/// The floor under any engine that streams a task's output: tokio spawns with the three pipes read to the end.
async fn piped_async_spawns(count: usize) -> Duration {
    use std::process::Stdio;
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    for _ in 0..count {
        let mut child = tokio::process::Command::new("/bin/true")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("/bin/true runs");
        drop(child.stdin.take());
        let mut sink = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut sink).await.unwrap();
        child.stderr.take().unwrap().read_to_end(&mut sink).await.unwrap();
        assert!(child.wait().await.unwrap().success());
    }
    started.elapsed()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("workflows");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("conveyor.toml"), "[services.Noop]\ncommand = [\"true\"]\n").unwrap();
    std::fs::write(folder.join("noop.toml"), chain("Noop1000", 1000, "service = \"Noop\"")).unwrap();
    std::fs::write(folder.join("true.toml"), chain("True200", 200, "command = [\"/bin/true\"]")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let catalog = load_folder(Path::new(&folder));
        assert_eq!(catalog.problem_count(), 0);
        let mut config = EngineConfig::new(&folder, dir.path().join("state"));
        config.executors.insert("Noop".into(), Arc::new(Noop));
        let engine = Engine::open(config, catalog.registry.clone()).unwrap();
        for workflow in catalog.workflows {
            engine.register(workflow);
        }

        run_once(&engine, "Noop1000").await; // warm-up
        let mut per_task = Vec::new();
        for _ in 0..5 {
            per_task.push(run_once(&engine, "Noop1000").await.as_secs_f64() * 1e6 / 1000.0);
        }
        per_task.sort_by(f64::total_cmp);
        println!(
            "1,000-task no-op chain, store on: per-task overhead median {:.0} µs (min {:.0}, max {:.0}) over 5 runs",
            per_task[2], per_task[0], per_task[4]
        );

        direct_spawns(20);
        run_once(&engine, "True200").await;
        let mut ratios = Vec::new();
        for _ in 0..3 {
            let direct = direct_spawns(200);
            let engine_time = run_once(&engine, "True200").await;
            ratios.push((engine_time.as_secs_f64() / direct.as_secs_f64(), engine_time, direct));
        }
        ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, engine_time, direct) = ratios[1];
        let piped = piped_async_spawns(200).await;
        println!(
            "200 × /bin/true spawned by tokio with piped stdin/stdout/stderr, no engine: {:.0} ms (ratio {:.2} to direct)",
            piped.as_secs_f64() * 1e3,
            piped.as_secs_f64() / direct.as_secs_f64()
        );
        println!(
            "200 × /bin/true: engine {:.0} ms, direct spawn+wait {:.0} ms, ratio {ratio:.2} (median of 3; aim ≤ 1.3)",
            engine_time.as_secs_f64() * 1e3,
            direct.as_secs_f64() * 1e3
        );
        engine.shutdown().await;
    });
    println!("peak memory (VmHWM): {} KiB", peak_memory_kib());
}
