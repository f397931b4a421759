//! Prometheus metrics through the real binary: scraped over HTTP from a daemon (by `--metrics` and by the
//! registry's `[metrics]`) and from the console's engine; the README's examples and `contrib/` checked against
//! what a scrape shows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::common::*;
use crate::engine_harness::wait_until;

const HELLO: &str =
    "id = \"Hello\"\n[[tasks]]\nname = \"Greet\"\nrun = 'echo hello'\n[[tasks]]\nname = \"Wait\"\nrun = 'sleep 0.2'\n";
const FAILS: &str = "id = \"Fails\"\n[[tasks]]\nname = \"Boom\"\nrun = 'exit 3'\n";
/// Due every second: fires to measure.
const BEAT: &str = "id = \"Beat\"\n[trigger]\ntype = \"schedule\"\ncron = \"* * * * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"T\"\nrun = 'true'\n";
const GATE_REGISTRY: &str = "[layers.Gate]\nitems = \"applications\"\napproval = \"item.amount > 100\"\n";
const GOVERNED: &str = r#"
id = "Governed"
[[tasks]]
name = "Produce"
run = '''echo '{"applications": [{"id": "A-1", "amount": 500}]}' > "$CONVEYOR_OUTPUT"'''
[[tasks]]
name = "Review"
layer = "Gate"
"#;
/// Scheduled, but not due in any test: its lateness series is there from the start.
const YEARLY: &str = "id = \"Yearly\"\n[trigger]\ntype = \"schedule\"\ncron = \"0 0 1 1 *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"T\"\nrun = 'true'\n";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A daemon whose log goes to a file (a pipe nobody reads could fill and stall it); stopped when dropped.
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, args: &[&str]) -> Daemon {
        let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
        let child =
            conveyor().arg("daemon").args(args).current_dir(dir).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        Daemon { child: Some(child), dir: dir.to_path_buf() }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// The address the daemon says it serves on (the tests ask for port 0: any free one), once it is running:
    /// its workflows active and its folder watched.
    fn metrics_url(&mut self) -> String {
        wait_until("the daemon runs", || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon ended ({status}):\n{}", self.log());
            }
            self.log().contains("conveyor daemon (PID")
        });
        let log = self.log();
        let at = log.find("serving metrics at ").unwrap() + "serving metrics at ".len();
        log[at..].split_whitespace().next().unwrap().to_string()
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        conveyor().args(args).current_dir(&self.dir).output().unwrap()
    }

    fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap().code()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One scrape over real HTTP, checked to be a whole OpenMetrics page.
pub fn scrape(url: &str) -> String {
    let mut response = ureq::get(url).call().expect("the metrics endpoint answers");
    let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let page = response.body_mut().read_to_string().unwrap();
    assert!(page.ends_with("# EOF\n"), "{page}");
    page
}

/// The value of one series (`name{labels}` exactly as the page writes it).
pub fn value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every name a query can use: the families the page declares, with the suffixes their samples carry.
fn scrape_names(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        let Some(declared) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = declared.split_once(' ').unwrap();
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "info" => &["_info"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

/// The `conveyor_…` names a PromQL expression uses.
fn metric_names(expression: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expression;
    while let Some(at) = rest.find("conveyor_") {
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

fn folder(registry: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join("workflows");
    write(&workflows, "hello.toml", HELLO);
    write(&workflows, "fails.toml", FAILS);
    write(&workflows, "yearly.toml", YEARLY);
    if let Some(registry) = registry {
        write(&workflows, "conveyor.toml", registry);
    }
    dir
}

fn trigger(daemon: &Daemon, workflow: &str) -> String {
    let output = daemon.cli(&["trigger", workflow]);
    assert_eq!(output.status.code(), Some(0), "{}{}", text(&output.stderr), daemon.log());
    text(&output.stdout).split_whitespace().nth(2).expect("started run ID of …").to_string()
}

#[test]
fn a_daemons_metrics_move_after_runs_under_workflow_and_task_labels_and_never_a_run_id() {
    let dir = folder(None);
    write(&dir.path().join("workflows"), "beat.toml", BEAT);
    let mut daemon = Daemon::start(dir.path(), &["--metrics", "127.0.0.1:0"]);
    let url = daemon.metrics_url();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"), "{url}");
    let before = scrape(&url);
    assert_eq!(value(&before, "conveyor_runs_started_total{workflow=\"Hello\"}"), Some(0.0), "{before}");
    assert_eq!(value(&before, "conveyor_runs_finished_total{workflow=\"Fails\",state=\"failed\"}"), Some(0.0));
    assert_eq!(
        value(&before, "conveyor_task_attempts_total{workflow=\"Hello\",task=\"Wait\",state=\"succeeded\"}"),
        None
    );
    assert_eq!(value(&before, "conveyor_build_info{version=\"0.1.0\"}"), Some(1.0));
    let commits_before = value(&before, "conveyor_store_commit_duration_seconds_count").unwrap();

    let hello = trigger(&daemon, "Hello");
    let fails = trigger(&daemon, "Fails");
    let mut page = String::new();
    wait_until("both runs ended, as the metrics say", || {
        page = scrape(&url);
        value(&page, "conveyor_runs_finished_total{workflow=\"Hello\",state=\"succeeded\"}") == Some(1.0)
            && value(&page, "conveyor_runs_finished_total{workflow=\"Fails\",state=\"failed\"}") == Some(1.0)
    });
    let expected = [
        ("conveyor_runs_started_total{workflow=\"Hello\"}", 1.0),
        ("conveyor_runs_started_total{workflow=\"Fails\"}", 1.0),
        ("conveyor_runs_finished_total{workflow=\"Hello\",state=\"failed\"}", 0.0),
        ("conveyor_task_attempts_total{workflow=\"Hello\",task=\"Greet\",state=\"succeeded\"}", 1.0),
        ("conveyor_task_attempts_total{workflow=\"Hello\",task=\"Wait\",state=\"succeeded\"}", 1.0),
        ("conveyor_task_attempts_total{workflow=\"Fails\",task=\"Boom\",state=\"failed\"}", 1.0),
        ("conveyor_task_duration_seconds_count{workflow=\"Hello\",task=\"Wait\"}", 1.0),
        ("conveyor_task_duration_seconds_bucket{le=\"0.1\",workflow=\"Hello\",task=\"Wait\"}", 0.0),
        ("conveyor_task_duration_seconds_count{workflow=\"Fails\",task=\"Boom\"}", 1.0),
        ("conveyor_active_runs{workflow=\"Hello\"}", 0.0),
        ("conveyor_waiting_gates{workflow=\"Hello\"}", 0.0),
        ("conveyor_fire_lateness_seconds_count{workflow=\"Yearly\"}", 0.0),
        ("conveyor_broken_workflow_files", 0.0),
    ];
    for (series, wanted) in expected {
        assert_eq!(value(&page, series), Some(wanted), "{series} in:\n{page}");
    }
    // `Wait` slept 0.2 s: its one attempt took at least that.
    assert!(value(&page, "conveyor_task_duration_seconds_sum{workflow=\"Hello\",task=\"Wait\"}").unwrap() >= 0.2);
    assert!(value(&page, "conveyor_store_commit_duration_seconds_count").unwrap() > commits_before);
    assert!(
        value(&page, "conveyor_unacknowledged_alerts{severity=\"error\"}").unwrap() >= 1.0,
        "the failed run's alert"
    );
    assert!(!page.contains(&hello) && !page.contains(&fails), "no run id is a label:\n{page}");
    wait_until("a scheduled fire is measured", || {
        value(&scrape(&url), "conveyor_fire_lateness_seconds_count{workflow=\"Beat\"}")
            .is_some_and(|fires| fires >= 1.0)
    });
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
}

#[test]
fn a_workflow_added_while_the_daemon_runs_gets_its_own_label_and_a_removed_one_loses_its_gauges() {
    let dir = folder(None);
    let workflows = dir.path().join("workflows");
    let mut daemon = Daemon::start(dir.path(), &["--metrics", "127.0.0.1:0"]);
    let url = daemon.metrics_url();
    write(&workflows, "later.toml", "id = \"Later\"\n[[tasks]]\nname = \"Step\"\nrun = 'true'\n");
    // The folder is read again once the edit has settled: until then `Later` is unknown.
    wait_until("the added workflow can be triggered", || daemon.cli(&["trigger", "Later"]).status.code() == Some(0));
    let mut page = String::new();
    wait_until("its run is counted under its id", || {
        page = scrape(&url);
        value(&page, "conveyor_runs_finished_total{workflow=\"Later\",state=\"succeeded\"}") == Some(1.0)
    });
    let attempts = "conveyor_task_attempts_total{workflow=\"Later\",task=\"Step\",state=\"succeeded\"}";
    assert_eq!(value(&page, attempts), Some(1.0), "{page}");
    assert!(!page.contains("workflow=\"other\""), "{page}");
    assert_eq!(value(&page, "conveyor_active_runs{workflow=\"Later\"}"), Some(0.0));

    std::fs::remove_file(workflows.join("later.toml")).unwrap();
    wait_until("the removed workflow's gauges go", || {
        value(&scrape(&url), "conveyor_active_runs{workflow=\"Later\"}").is_none()
    });
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
}

#[test]
fn a_waiting_gate_shows_in_the_gauges_until_an_operator_answers_it() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("workflows"), "conveyor.toml", GATE_REGISTRY);
    write(&dir.path().join("workflows"), "governed.toml", GOVERNED);
    let mut daemon = Daemon::start(dir.path(), &["--metrics", "0"]);
    let url = daemon.metrics_url();
    assert!(url.starts_with("http://127.0.0.1:"), "a bare port is served on loopback: {url}");
    let idle = scrape(&url);
    for gauge in ["conveyor_waiting_gates", "conveyor_active_runs", "conveyor_gate_wait_seconds"] {
        assert_eq!(value(&idle, &format!("{gauge}{{workflow=\"Governed\"}}")), Some(0.0), "{idle}");
    }

    let run = trigger(&daemon, "Governed");
    wait_until("the gate is counted as waiting", || {
        value(&scrape(&url), "conveyor_waiting_gates{workflow=\"Governed\"}") == Some(1.0)
    });
    wait_until("the gate's wait grows", || {
        value(&scrape(&url), "conveyor_gate_wait_seconds{workflow=\"Governed\"}").is_some_and(|waited| waited > 0.0)
    });
    let waiting = scrape(&url);
    assert_eq!(value(&waiting, "conveyor_active_runs{workflow=\"Governed\"}"), Some(1.0), "{waiting}");

    let approved = daemon.cli(&["approve", &run]);
    assert_eq!(approved.status.code(), Some(0), "{}", text(&approved.stderr));
    let mut page = String::new();
    wait_until("the run ends", || {
        page = scrape(&url);
        value(&page, "conveyor_runs_finished_total{workflow=\"Governed\",state=\"succeeded\"}") == Some(1.0)
    });
    for gauge in ["conveyor_waiting_gates", "conveyor_active_runs", "conveyor_gate_wait_seconds"] {
        assert_eq!(value(&page, &format!("{gauge}{{workflow=\"Governed\"}}")), Some(0.0), "{page}");
    }
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
}

#[test]
fn the_readmes_metrics_block_serves_and_contrib_names_only_metrics_a_scrape_shows() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block_start = readme.find("```toml\n[metrics]\n").expect("the README shows the registry's [metrics]") + 8;
    let block = &readme[block_start..block_start + readme[block_start..].find("```").unwrap()];
    assert_eq!(block, "[metrics]\nlisten = \"127.0.0.1:9464\"\n");
    assert!(readme.contains("conveyor daemon --metrics 9464                 # http://127.0.0.1:9464/metrics"));
    assert!(readme.contains("      - targets: [\"127.0.0.1:9464\"]\nrule_files:\n  - conveyor-alerts.yml\n"));
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `conveyor_"))
        .map(|line| &line[..line.find('`').unwrap()])
        .collect();
    let exported: Vec<&str> =
        conveyor::metrics::EXPORTED.iter().map(|name| name.strip_prefix("conveyor_").unwrap()).collect();
    assert_eq!(documented, exported, "the README's table of metrics is the list the engine exports");

    let dir = folder(Some(&block.replace("9464", "0")));
    let mut daemon = Daemon::start(dir.path(), &[]);
    let url = daemon.metrics_url();
    // Task series appear with a task's first attempt: after one run, every family has one.
    trigger(&daemon, "Hello");
    let mut page = String::new();
    wait_until("the run ended, as the metrics say", || {
        page = scrape(&url);
        value(&page, "conveyor_runs_finished_total{workflow=\"Hello\",state=\"succeeded\"}") == Some(1.0)
    });
    let names = scrape_names(&page);
    for exported in conveyor::metrics::EXPORTED {
        assert!(names.iter().any(|name| name.starts_with(exported)), "{exported} in {names:?}");
    }
    for exported in ["conveyor_fire_lateness_seconds_bucket", "conveyor_build_info", "conveyor_runs_finished_total"] {
        assert!(names.contains(exported), "{exported} in {names:?}");
    }

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("contrib/grafana-dashboard.json")).unwrap())
            .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "conveyor");
    let mut expressions = Vec::new();
    collect_expressions(&dashboard, &mut expressions);
    assert!(expressions.len() >= 10, "{expressions:?}");
    let used: BTreeSet<String> = expressions.iter().flat_map(|expression| metric_names(expression)).collect();
    for name in &used {
        assert!(names.contains(name), "the dashboard's {name} is not in a scrape: {names:?}");
    }
    // Every family the engine exports has a panel.
    for line in page.lines().filter_map(|line| line.strip_prefix("# TYPE ")) {
        let family = line.split(' ').next().unwrap();
        assert!(used.iter().any(|name| name.starts_with(family)), "no panel shows {family}");
    }

    let rules = std::fs::read_to_string(root().join("contrib/conveyor-alerts.yml")).unwrap();
    let alerts = check_alert_rules(&rules);
    assert_eq!(
        alerts.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
        ["ConveyorRunFailed", "ConveyorFireLate", "ConveyorGateWaiting", "ConveyorWorkflowFileBroken"]
    );
    for (alert, expression) in &alerts {
        let used = metric_names(expression);
        assert!(!used.is_empty(), "{alert} uses a Conveyor metric");
        for name in used {
            assert!(names.contains(&name), "{alert}'s {name} is not in a scrape: {names:?}");
        }
    }
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
}

fn collect_expressions(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, field) in fields {
                match (key.as_str(), field) {
                    ("expr", serde_json::Value::String(expression)) => into.push(expression.clone()),
                    _ => collect_expressions(field, into),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_expressions(item, into)),
        _ => {}
    }
}

/// The rules file's shape, without a YAML parser: `groups:` → a named group → `rules:`, each rule an
/// `alert:` with an `expr:`, `labels:` with a `severity:` and `annotations:` with a `summary:`, indented by
/// spaces. Returns each alert's name and expression.
fn check_alert_rules(text: &str) -> Vec<(String, String)> {
    assert!(!text.contains('\t'), "YAML is indented by spaces");
    let lines: Vec<&str> =
        text.lines().filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty()).collect();
    assert_eq!(lines[0], "groups:");
    assert_eq!(lines[1], "  - name: conveyor");
    assert_eq!(lines[2], "    rules:");
    let mut alerts: Vec<(String, Vec<&str>)> = Vec::new();
    for line in &lines[3..] {
        if let Some(name) = line.strip_prefix("      - alert: ") {
            alerts.push((name.to_string(), Vec::new()));
        } else {
            assert!(line.starts_with("        "), "`{line}` belongs to a rule");
            alerts.last_mut().expect("a rule starts with `- alert:`").1.push(line.trim());
        }
    }
    alerts
        .into_iter()
        .map(|(name, body)| {
            let expression = body.iter().find_map(|line| line.strip_prefix("expr: ")).expect("every rule has expr");
            for key in ["labels:", "annotations:"] {
                assert!(body.contains(&key), "{name} has {key}");
            }
            assert!(body.iter().any(|line| line.starts_with("severity: ")), "{name} has a severity");
            assert!(body.iter().any(|line| line.starts_with("summary: \"")), "{name} has a summary");
            (name, expression.to_string())
        })
        .collect()
}

#[test]
fn a_bad_or_taken_metrics_address_stops_the_daemon_before_its_engine_starts() {
    let dir = folder(None);
    let bad = run(&["daemon", "--metrics", "everywhere"], dir.path());
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        text(&bad.stderr),
        format!("conveyor: --metrics: bad listen address `everywhere`: {}\n", conveyor::listen::EXPECTED)
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let refused = run(&["daemon", "--metrics", &address], dir.path());
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains(&format!("conveyor: cannot serve metrics on {address}: ")), "{stderr}");
    assert!(stderr.ends_with("(choose another with --metrics or the registry's [metrics] listen)\n"), "{stderr}");
    assert!(!dir.path().join(".conveyor/conveyor.db").exists(), "no engine opened the state folder");
}
