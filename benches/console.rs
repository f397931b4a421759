//! Console benchmarks (run with `cargo bench --bench console`; about two minutes; figures printed, never
//! asserted):
//! - time to first frame with 500 workflow files: the library path (load, model, draw) and the real binary
//!   in tmux (spawn until the list is on screen);
//! - render time per frame with 1,000 workflows and a 1,000,000-line log open, and the log's indexing time;
//! - the real console at rest for 60 s: CPU and memory.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use conveyor::console::{Chrome, Keymap, LogIndex, LogView, Model, Pane, Theme, WorkflowRow, draw, extend_index};
use conveyor::definition::load_folder;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn workflows(folder: &Path, count: usize) {
    std::fs::create_dir_all(folder).unwrap();
    for index in 0..count {
        let text = format!(
            "id = \"Flow{index:04}\"\n[trigger]\ntype = \"schedule\"\ncron = \"{} {} * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"A\"\nrun = 'true'\n[[tasks]]\nname = \"B\"\nrun = 'true'\n",
            index % 60,
            index % 24
        );
        std::fs::write(folder.join(format!("flow{index:04}.toml")), text).unwrap();
    }
}

fn vm(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn tmux(socket: &str, args: &[&str]) -> String {
    let output = Command::new("tmux").arg("-L").arg(socket).args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn first_frame(dir: &Path) {
    let folder = dir.join("workflows");
    let started = Instant::now();
    let catalog = load_folder(&folder);
    let loaded = started.elapsed();
    let mut model = Model::new(WorkflowRow::from_catalog(&catalog, Utc::now()), false, Utc::now());
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let (theme, keymap) = (Theme::new(true), Keymap::default());
    let chrome = Chrome { theme: &theme, keymap: &keymap, utc: true, engine_log: None };
    terminal
        .draw(|frame| {
            draw(frame, &mut model, &chrome);
        })
        .unwrap();
    println!(
        "first frame, 500 workflow files, library path: {:.1} ms (loading and checking the files {:.1} ms)",
        started.elapsed().as_secs_f64() * 1e3,
        loaded.as_secs_f64() * 1e3
    );

    let socket = format!("conveyor-bench-{}", std::process::id());
    let binary = env!("CARGO_BIN_EXE_conveyor");
    let started = Instant::now();
    tmux(&socket, &["new-session", "-d", "-s", "c", "-x", "120", "-y", "40", "-c", dir.to_str().unwrap(), binary]);
    loop {
        let screen = tmux(&socket, &["capture-pane", "-p", "-t", "c"]);
        if screen.contains("Flow0000") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the console showed its list:\n{screen}");
        std::thread::sleep(Duration::from_millis(2));
    }
    println!(
        "first frame, 500 workflow files, real binary in tmux (spawn → list on screen, engine and 500 schedules started): {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let pid: u32 = tmux(&socket, &["display-message", "-p", "-t", "c", "#{pane_pid}"]).trim().parse().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = ticks(pid);
    let idle_started = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let used = (ticks(pid) - before) as f64 / 100.0;
    println!(
        "console at rest, 500 workflows, {:.0} s: CPU {used:.2} s = {:.3} % of a core; RSS {} KiB, peak {} KiB",
        idle_started.elapsed().as_secs_f64(),
        used / idle_started.elapsed().as_secs_f64() * 100.0,
        vm(pid, "VmRSS:"),
        vm(pid, "VmHWM:")
    );
    tmux(&socket, &["send-keys", "-t", "c", "q"]);
    std::thread::sleep(Duration::from_secs(1));
    tmux(&socket, &["kill-server"]);
}

fn render_heavy(dir: &Path) {
    let folder = dir.join("thousand");
    workflows(&folder, 1000);
    let catalog = load_folder(&folder);
    let mut model = Model::new(WorkflowRow::from_catalog(&catalog, Utc::now()), false, Utc::now());
    let log = dir.join("big.log");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
        for line in 0..1_000_000 {
            if line % 50_000 == 0 {
                writeln!(file, "ERROR: something failed at step {line}").unwrap();
            } else {
                writeln!(file, "2026-11-25T12:00:00Z processing record {line} of 1000000 with some payload text")
                    .unwrap();
            }
        }
    }
    let started = Instant::now();
    let index = extend_index(&log, &LogIndex::default());
    println!(
        "indexing a 1,000,000-line log ({} MiB, in the background in the console): {:.0} ms, {} error lines",
        std::fs::metadata(&log).unwrap().len() / (1024 * 1024),
        started.elapsed().as_secs_f64() * 1e3,
        index.errors.len()
    );
    let mut view = LogView::new("r".into(), "T".into(), 1, log.clone(), false, false);
    view.set_index(Arc::new(index));
    view.show(500_000);
    model.log = Some(view);
    model.focus = Pane::Log;
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let (theme, keymap) = (Theme::new(true), Keymap::default());
    let chrome = Chrome { theme: &theme, keymap: &keymap, utc: true, engine_log: None };
    let frames = 200;
    let started = Instant::now();
    for frame_number in 0..frames {
        // Scroll a line each frame, so every frame reads new lines from the file.
        if let Some(log) = model.log.as_mut() {
            log.scroll(if frame_number % 2 == 0 { 1 } else { -1 } * 7);
        }
        model.cursor.workflow = frame_number % 1000;
        terminal
            .draw(|frame| {
                draw(frame, &mut model, &chrome);
            })
            .unwrap();
        // The console reads the lines a frame asks for off its thread, then draws again: both are counted.
        if let Some(request) = model.log.as_mut().and_then(LogView::window_request) {
            let lines = request.read();
            model.log.as_mut().unwrap().set_window(request.key, lines);
            terminal
                .draw(|frame| {
                    draw(frame, &mut model, &chrome);
                })
                .unwrap();
        }
    }
    println!(
        "render, 1,000 workflows and a 1,000,000-line log open, 120x40: {:.2} ms per scroll step (a frame, the lines it asks for, the frame that shows them; mean of {frames})",
        started.elapsed().as_secs_f64() * 1e3 / frames as f64
    );
    println!(
        "peak memory of this benchmark process (1,000 workflows, the log's index): {} KiB",
        vm(std::process::id(), "VmHWM:")
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    workflows(&dir.path().join("workflows"), 500);
    render_heavy(dir.path());
    first_frame(dir.path());
}
