//! Scheduler benchmarks (run with `cargo bench --bench scheduler`; about three minutes; figures printed,
//! never asserted):
//! - fire lateness: scheduled instant to the first task's process start, over 120 fires of an
//!   every-second schedule;
//! - the daemon at rest with 100 scheduled workflows: CPU over 60 s, and memory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conveyor::definition::load_folder;
use conveyor::engine::{Engine, EngineConfig, Event};
use conveyor::state::RunState;

const FIRES: usize = 120;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn lateness() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("workflows");
    std::fs::create_dir_all(&folder).unwrap();
    // `date` is exec'd straight (no shell): the time it prints is when the task's process began to run.
    let workflow = "id = \"Beat\"\nkeep_runs = 1000\n[trigger]\ntype = \"schedule\"\ncron = \"* * * * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"Stamp\"\ncommand = [\"date\", \"+%s.%N\"]\n";
    std::fs::write(folder.join("beat.toml"), workflow).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut late_ms: Vec<f64> = runtime.block_on(async {
        let catalog = load_folder(Path::new(&folder));
        let engine =
            Engine::open(EngineConfig::new(&folder, dir.path().join("state")), catalog.registry.clone()).unwrap();
        for workflow in catalog.workflows {
            engine.register(workflow);
        }
        let mut events = engine.subscribe();
        engine.start("Beat").await.unwrap();
        let mut lateness = Vec::new();
        let mut pending: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
        while lateness.len() < FIRES {
            match events.recv().await {
                Ok(Event::Run(run)) if run.state == RunState::Running && run.finished_at.is_none() => {
                    let scheduled = run.input["scheduled_at"].as_str().unwrap();
                    let scheduled = chrono::DateTime::parse_from_rfc3339(scheduled).unwrap();
                    pending.insert(run.id.clone(), scheduled.timestamp_nanos_opt().unwrap() as f64 / 1e9);
                }
                Ok(Event::Log { run_id, line, stream: conveyor::tasks::Stream::Stdout, .. }) => {
                    if let (Some(scheduled), Ok(started)) = (pending.remove(&run_id), line.trim().parse::<f64>()) {
                        lateness.push((started - scheduled) * 1e3);
                    }
                }
                _ => {}
            }
        }
        engine.shutdown().await;
        lateness
    });
    late_ms.sort_by(f64::total_cmp);
    println!(
        "fire lateness (scheduled instant → task process running), {} fires of `* * * * * *`: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (aim: p99 < 10 ms)",
        late_ms.len(),
        percentile(&late_ms, 0.5),
        percentile(&late_ms, 0.99),
        late_ms[late_ms.len() - 1]
    );
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat, 12 and 13 after the command name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn memory_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn idle_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("workflows");
    std::fs::create_dir_all(&folder).unwrap();
    for index in 0..100 {
        let workflow = format!(
            "id = \"Nightly{index}\"\n[trigger]\ntype = \"schedule\"\ncron = \"{} 3 * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"T\"\nrun = 'true'\n",
            index % 60
        );
        std::fs::write(folder.join(format!("w{index}.toml")), workflow).unwrap();
    }
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .arg("daemon")
        .current_dir(dir.path())
        .env("CONVEYOR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = daemon.id();
    std::thread::sleep(Duration::from_secs(3));
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let before = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let used = (cpu_ticks(pid) - before) as f64 / ticks_per_second;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "daemon at rest, 100 scheduled workflows, {elapsed:.0} s: CPU {:.3} s = {:.3} % of a core (aim < 0.5 %); RSS {} KiB, peak {} KiB",
        used,
        used / elapsed * 100.0,
        memory_kib(pid, "VmRSS:"),
        memory_kib(pid, "VmHWM:")
    );
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = daemon.wait();
}

fn main() {
    lateness();
    idle_daemon();
}
