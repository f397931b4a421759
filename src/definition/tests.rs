use std::fs;
use std::path::Path;
use std::time::Duration;

use super::*;

const REGISTRY: &str = r#"
[services.Fetch]
command = ["sh", "fetch.sh"]
[services.Backup]
url = "http://127.0.0.1:9/backup"
[agents.Scorer]
command = ["sh", "score.sh"]
[layers.Gate]
items = "applications"
rules = [ { name = "eligible", expr = "item.score >= 0.7" } ]
approval = "item.amount > 100000"
"#;

const SEED: &str = include_str!("../../workflows/daily_grant_pipeline.toml");
const SEED_REGISTRY: &str = include_str!("../../workflows/conveyor.toml");

/// Loads `files` (name, text) from a fresh folder; returns the catalog and its problems as
/// `name:line:column: message`.
fn load(files: &[(&str, &str)]) -> (Catalog, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    let catalog = load_folder(dir.path());
    let mut problems: Vec<&Problem> = catalog.problems().collect();
    problems.sort();
    let problems = problems
        .into_iter()
        .map(|p| {
            let name = p.file.strip_prefix(dir.path()).unwrap_or(&p.file).display().to_string();
            format!("{name}:{}:{}: {}", p.line, p.column, p.message)
        })
        .collect();
    (catalog, problems)
}

fn problems_of(workflow: &str) -> Vec<String> {
    load(&[("conveyor.toml", REGISTRY), ("w.toml", workflow)]).1
}

fn task_with(extra: &str) -> String {
    format!("id = \"W\"\n[[tasks]]\nname = \"T\"\nrun = \"true\"\n{extra}\n")
}

#[test]
fn the_seed_pipeline_loads_exactly_as_written() {
    let (catalog, problems) = load(&[("conveyor.toml", SEED_REGISTRY), ("seed.toml", SEED)]);
    assert_eq!(problems, Vec::<String>::new());
    let workflow = catalog.workflow("DailyGrantPipeline").unwrap();
    let Trigger::Schedule(schedule) = &workflow.trigger else { panic!("a schedule trigger") };
    assert_eq!(schedule.expression(), "0 2 * * *");
    assert_eq!(schedule.zone().to_string(), "America/New_York");
    let kinds: Vec<(&str, TaskKind, Option<&str>)> =
        workflow.tasks.iter().map(|t| (t.name.as_str(), t.kind.clone(), t.action.as_deref())).collect();
    assert_eq!(
        kinds,
        vec![
            ("Ingest", TaskKind::Service("GrantIngestionService".into()), Some("fetch_new")),
            ("Score", TaskKind::Agent("EligibilityAgent".into()), Some("analyze_and_suggest")),
            ("Review", TaskKind::Layer("GovernanceLayer".into()), Some("enforce")),
            ("Award", TaskKind::Service("PolicyService".into()), Some("update")),
            ("Notify", TaskKind::Service("NotificationService".into()), Some("send")),
        ]
    );
    assert!(!workflow.is_dag());
    assert_eq!(workflow.overlap, Overlap::Skip);
    assert_eq!(workflow.catchup, Catchup::Latest);
    assert_eq!(workflow.keep_runs, DEFAULT_KEEP_RUNS);
}

#[test]
fn every_option_is_read_into_the_definition() {
    let (catalog, problems) = load(&[
        ("conveyor.toml", REGISTRY),
        (
            "w.toml",
            r#"
id = "Full"
description = "all the options"
overlap = "cancel_previous"
catchup = "all"
max_active_runs = 3
timeout = "1h30m"
jitter = "30s"
keep_runs = 7
[trigger]
type = "schedule"
cron = "*/15 * * * * *"
timezone = "UTC"
[params]
label = "x"
limit = { type = "integer", default = 5, description = "at most" }
ratio = { type = "float", default = 1 }
[on_failure]
run = "echo failed"
[[tasks]]
name = "A"
service = "Fetch"
action = "go"
retries = 3
retry_delay = "250ms"
backoff = 1.5
timeout = "5m"
fallback = ["Backup", "Scorer"]
when = "input.ok"
continue_on_failure = true
env = { MODE = "fast" }
[[tasks]]
name = "B"
command = ["echo", "hi"]
depends_on = ["A"]
"#,
        ),
    ]);
    assert_eq!(problems, Vec::<String>::new());
    let w = catalog.workflow("Full").unwrap();
    assert_eq!(w.description.as_deref(), Some("all the options"));
    assert_eq!((w.overlap, w.catchup, w.max_active_runs, w.keep_runs), (Overlap::CancelPrevious, Catchup::All, 3, 7));
    assert_eq!(w.timeout, Some(Duration::from_secs(5400)));
    assert_eq!(w.jitter, Some(Duration::from_secs(30)));
    assert_eq!(
        w.on_failure.as_ref().map(|t| (t.name.as_str(), t.kind.clone())),
        Some(("on_failure", TaskKind::Run("echo failed".into())))
    );
    let params: Vec<(&str, ParamType, Option<serde_json::Value>)> =
        w.params.iter().map(|p| (p.name.as_str(), p.kind, p.default.clone())).collect();
    assert_eq!(
        params,
        vec![
            ("label", ParamType::String, Some("x".into())),
            ("limit", ParamType::Integer, Some(5.into())),
            ("ratio", ParamType::Float, Some(1.0.into())),
        ]
    );
    let a = w.task("A").unwrap();
    assert_eq!((a.retries, a.retry_delay, a.backoff), (3, Duration::from_millis(250), 1.5));
    assert_eq!(a.timeout, Some(Duration::from_secs(300)));
    assert_eq!(a.fallback, vec!["Backup", "Scorer"]);
    assert_eq!(a.when.as_deref(), Some("input.ok"));
    assert!(a.continue_on_failure);
    assert_eq!(a.env.get("MODE").map(String::as_str), Some("fast"));
    assert_eq!(a.line, 20);
    let b = w.task("B").unwrap();
    assert_eq!(b.kind, TaskKind::Command(vec!["echo".into(), "hi".into()]));
    assert_eq!(b.depends_on, vec!["A"]);
    assert!(w.is_dag());
}

#[test]
fn defaults_apply_when_options_are_left_out() {
    let (catalog, problems) = load(&[("w.toml", &task_with(""))]);
    assert!(problems.is_empty(), "{problems:?}");
    let w = catalog.workflow("W").unwrap();
    assert!(matches!(w.trigger, Trigger::Manual));
    assert_eq!(w.max_active_runs, DEFAULT_MAX_ACTIVE_RUNS);
    let t = &w.tasks[0];
    assert_eq!((t.retries, t.retry_delay, t.backoff, t.timeout), (0, DEFAULT_RETRY_DELAY, DEFAULT_BACKOFF, None));
}

#[test]
fn unknown_keys_are_refused_where_they_are() {
    assert_eq!(
        problems_of(&task_with("retrys = 3")),
        vec![
            "w.toml:5:1: unknown field `retrys`, expected one of `name`, `service`, `agent`, `layer`, `run`, `command`, `action`, `retries`, `retry_delay`, `backoff`, `timeout`, `fallback`, `when`, `depends_on`, `continue_on_failure`, `env`, `max_output_size`, `max_log_size`"
        ]
    );
    assert_eq!(
        problems_of("id = \"W\"\nschedule = \"daily\"\n"),
        vec![
            "w.toml:2:1: unknown field `schedule`, expected one of `id`, `description`, `trigger`, `params`, `overlap`, `catchup`, `max_active_runs`, `timeout`, `jitter`, `keep_runs`, `max_parallel`, `on_interrupt`, `on_failure`, `on_success`, `on_cancel`, `tasks`"
        ]
    );
    assert_eq!(
        problems_of("id = \"W\"\n[trigger]\ntype = \"schedule\"\ncorn = \"* * * * *\"\n"),
        vec!["w.toml:4:1: unknown field `corn`, expected one of `type`, `cron`, `timezone`, `watch`, `settle`"]
    );
}

#[test]
fn duplicate_workflow_ids_are_refused_in_the_second_file() {
    let (catalog, problems) = load(&[("a.toml", &task_with("")), ("b.toml", &task_with(""))]);
    assert_eq!(catalog.workflows.len(), 1);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("b.toml:1:6: duplicate workflow id `W`: already defined in "), "{problems:?}");
    assert!(problems[0].ends_with("a.toml"), "{problems:?}");
}

#[test]
fn duplicate_task_names_point_at_the_first_use() {
    let text = "id = \"W\"\n[[tasks]]\nname = \"T\"\nrun = \"a\"\n[[tasks]]\nname = \"T\"\nrun = \"b\"\n";
    assert_eq!(problems_of(text), vec!["w.toml:6:8: duplicate task name `T`: already used on line 3"]);
}

#[test]
fn a_task_needs_exactly_one_kind() {
    assert_eq!(
        problems_of("id = \"W\"\n[[tasks]]\nname = \"T\"\naction = \"x\"\n"),
        vec!["w.toml:2:1: task `T` has no kind: expected one of `service`, `agent`, `layer`, `run` or `command`"]
    );
    assert_eq!(
        problems_of("id = \"W\"\n[[tasks]]\nname = \"T\"\nservice = \"Fetch\"\nagent = \"Scorer\"\n"),
        vec![
            "w.toml:5:9: task `T` has several kinds (`service`, `agent`): expected exactly one of `service`, `agent`, `layer`, `run` or `command`"
        ]
    );
    assert_eq!(
        problems_of("id = \"W\"\n[[tasks]]\nname = \"T\"\ncommand = []\n"),
        vec!["w.toml:4:11: task `T` has an empty `command`: expected a program and its arguments"]
    );
    assert_eq!(
        problems_of("id = \"W\"\n[[tasks]]\nrun = \"x\"\n"),
        vec!["w.toml:2:1: a task has no `name`: expected e.g. `name = \"Ingest\"`"]
    );
}

#[test]
fn references_to_unknown_registry_entries_are_refused() {
    let text = "id = \"W\"\n[[tasks]]\nname = \"A\"\nservice = \"Fetchh\"\n[[tasks]]\nname = \"B\"\nagent = \"Nobody\"\n[[tasks]]\nname = \"C\"\nlayer = \"Fetch\"\n[[tasks]]\nname = \"D\"\nrun = \"x\"\nfallback = [\"Gate\"]\n";
    assert_eq!(
        problems_of(text),
        vec![
            "w.toml:4:11: unknown service `Fetchh`: expected a service defined in conveyor.toml (known: Backup, Fetch)",
            "w.toml:7:9: unknown agent `Nobody`: expected a agent defined in conveyor.toml (known: Scorer)",
            "w.toml:10:9: unknown layer `Fetch`: expected a layer defined in conveyor.toml (known: Gate)",
            "w.toml:14:13: unknown fallback `Gate`: expected a service or agent defined in conveyor.toml (known: Backup, Fetch, Scorer)",
        ]
    );
    let (_, without_registry) = load(&[("w.toml", "id = \"W\"\n[[tasks]]\nname = \"A\"\nservice = \"X\"\n")]);
    assert_eq!(
        without_registry,
        vec!["w.toml:4:11: unknown service `X`: expected a service defined in conveyor.toml (it defines none)"]
    );
}

#[test]
fn bad_cron_expressions_are_refused() {
    let schedule = |cron: &str| {
        format!("id = \"W\"\n[trigger]\ntype = \"schedule\"\ncron = \"{cron}\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n")
    };
    assert_eq!(
        problems_of(&schedule("0 2 * *")),
        vec![
            "w.toml:4:8: bad cron expression `0 2 * *`: it has 4 field(s); expected 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or a macro such as @daily"
        ]
    );
    let out_of_range = problems_of(&schedule("0 25 * * *"));
    assert_eq!(out_of_range.len(), 1);
    assert!(out_of_range[0].starts_with("w.toml:4:8: bad cron expression `0 25 * * *`: "), "{out_of_range:?}");
    for good in ["0 2 * * *", "*/5 0 2 * * *", "@daily", "@hourly", "@weekly", "@monthly", "@yearly", "0 9 * * MON-FRI"]
    {
        assert_eq!(problems_of(&schedule(good)), Vec::<String>::new(), "{good}");
    }
    assert_eq!(
        problems_of("id = \"W\"\n[trigger]\ntype = \"schedule\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n"),
        vec!["w.toml:3:8: a `schedule` trigger needs `cron`: expected e.g. `cron = \"0 2 * * *\"`"]
    );
}

#[test]
fn triggers_are_checked_by_type() {
    let trigger = |body: &str| format!("id = \"W\"\n[trigger]\n{body}\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n");
    assert_eq!(
        problems_of(&trigger("type = \"schedule\"\ncron = \"0 2 * * *\"\ntimezone = \"America/New_Yrok\"")),
        vec![
            "w.toml:5:12: unknown time zone `America/New_Yrok`: expected an IANA zone name such as `America/New_York`, `Europe/Berlin` or `UTC`"
        ]
    );
    assert_eq!(
        problems_of(&trigger("type = \"cron\"")),
        vec!["w.toml:3:8: unknown trigger type `cron`: expected `schedule`, `event` or `manual`"]
    );
    assert_eq!(
        problems_of(&trigger("type = \"event\"")),
        vec![
            "w.toml:3:8: an `event` trigger needs `watch`: expected a file pattern such as `watch = \"inbox/*.json\"`"
        ]
    );
    assert_eq!(
        problems_of(&trigger("type = \"manual\"\ncron = \"0 2 * * *\"")),
        vec!["w.toml:4:8: `cron` does not apply to a `manual` trigger: it belongs to `type = \"schedule\"`"]
    );
    assert_eq!(problems_of(&trigger("type = \"event\"\nwatch = \"inbox/*.json\"")), Vec::<String>::new());
}

#[test]
fn depends_on_must_name_tasks_without_cycles() {
    let text = "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"x\"\ndepends_on = [\"C\"]\n[[tasks]]\nname = \"B\"\nrun = \"x\"\ndepends_on = [\"A\"]\n[[tasks]]\nname = \"C\"\nrun = \"x\"\ndepends_on = [\"B\"]\n";
    assert_eq!(problems_of(text), vec!["w.toml:5:15: cycle in `depends_on`: A → C → B → A"]);
    assert_eq!(
        problems_of(&task_with("depends_on = [\"Ghost\"]")),
        vec!["w.toml:5:15: task `T` depends on unknown task `Ghost`: expected one of T"]
    );
    assert_eq!(problems_of(&task_with("depends_on = [\"T\"]")), vec!["w.toml:5:15: task `T` depends on itself"]);
}

#[test]
fn durations_need_a_number_and_a_unit() {
    for good in ["10s", "5m", "1h30m", "250ms", "2d"] {
        assert!(parse_duration(good).is_ok(), "{good}");
    }
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(
        problems_of(&task_with("timeout = \"5 parsecs\"")),
        vec![
            "w.toml:5:11: bad duration for `timeout`: `5 parsecs`: unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations); expected a number and a unit such as `10s`, `5m`, `1h30m` or `250ms`"
        ]
    );
    assert_eq!(
        problems_of(&task_with("retry_delay = \"10\"")),
        vec![
            "w.toml:5:15: bad duration for `retry_delay`: `10` has no unit; expected a number and a unit such as `10s`, `5m`, `1h30m` or `250ms`"
        ]
    );
}

#[test]
fn durations_longer_than_a_hundred_years_are_refused_wherever_they_are_given() {
    let too_long = "is more than 100 years; expected at most `100y` (36525 days)";
    assert_eq!(parse_duration("100y").unwrap(), MAX_DURATION);
    assert_eq!(parse_duration("36525d").unwrap(), MAX_DURATION);
    assert_eq!(parse_duration("36525d 1ns").unwrap_err(), format!("`36525d 1ns` {too_long}"));
    assert_eq!(
        problems_of(&task_with("timeout = \"99999999999d\"\nretry_delay = \"36526d\"")),
        vec![
            format!("w.toml:5:11: bad duration for `timeout`: `99999999999d` {too_long}"),
            format!("w.toml:6:15: bad duration for `retry_delay`: `36526d` {too_long}"),
        ]
    );
    assert_eq!(
        problems_of("id = \"W\"\ntimeout = \"101y\"\njitter = \"5000000h\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n"),
        vec![
            format!("w.toml:2:11: bad duration for `timeout`: `101y` {too_long}"),
            format!("w.toml:3:10: bad duration for `jitter`: `5000000h` {too_long}"),
        ]
    );
    assert_eq!(
        problems_of(
            "id = \"W\"\n[trigger]\ntype = \"event\"\nwatch = \"in/*\"\nsettle = \"200y\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n"
        ),
        vec![format!("w.toml:5:10: bad duration for `settle`: `200y` {too_long}")]
    );
    let (_, problems) = load(&[("conveyor.toml", "[services.A]\ncommand = [\"x\"]\ntimeout = \"99999999999d\"\n")]);
    assert_eq!(problems, vec![format!("conveyor.toml:3:11: bad duration for `timeout`: `99999999999d` {too_long}")]);
    assert_eq!(problems_of(&task_with("timeout = \"100y\"\nretry_delay = \"36525d\"")), Vec::<String>::new());
}

#[test]
fn numbers_and_choices_are_range_checked() {
    assert_eq!(
        problems_of(&task_with("retries = -1")),
        vec!["w.toml:5:11: bad `retries` -1: expected a whole number from 0 to 1000"]
    );
    assert_eq!(
        problems_of(&task_with("retries = 99999999999")),
        vec!["w.toml:5:11: bad `retries` 99999999999: expected a whole number from 0 to 1000"]
    );
    assert_eq!(problems_of(&task_with(&format!("retries = {MAX_RETRIES}"))), Vec::<String>::new());
    assert_eq!(
        problems_of(&task_with("backoff = 0.5")),
        vec!["w.toml:5:11: bad `backoff` 0.5: expected a factor from 1.0 (fixed delay) to 100.0"]
    );
    for written in ["nan", "inf", "-inf", "-2.0", "1e300"] {
        assert_eq!(
            problems_of(&task_with(&format!("backoff = {written}"))),
            vec![format!("w.toml:5:11: bad `backoff` {written}: expected a factor from 1.0 (fixed delay) to 100.0")],
        );
    }
    assert_eq!(
        problems_of("id = \"W\"\noverlap = \"sometimes\"\nkeep_runs = 0\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n"),
        vec![
            "w.toml:2:11: bad `overlap` `sometimes`: expected one of `skip`, `queue`, `cancel_previous`, `allow`",
            "w.toml:3:13: bad `keep_runs` 0: expected a whole number of 1 or more",
        ]
    );
}

#[test]
fn params_are_typed() {
    let params = |body: &str| format!("id = \"W\"\n[params]\n{body}\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n");
    assert_eq!(
        problems_of(&params("limit = { type = \"integer\", default = \"ten\" }")),
        vec!["w.toml:3:9: `default` of parameter `limit` is not a integer: got \"ten\""]
    );
    assert_eq!(
        problems_of(&params("limit = { type = \"decimal\" }")),
        vec!["w.toml:3:9: bad type `decimal` of parameter `limit`: expected `string`, `integer`, `float` or `boolean`"]
    );
    assert_eq!(
        problems_of(&params("limit = { typ = \"integer\" }")),
        vec!["w.toml:3:9: unknown key `typ` in parameter `limit`: expected `type`, `default` or `description`"]
    );
}

#[test]
fn bad_ids_and_names_are_refused() {
    assert_eq!(
        problems_of("id = \"my workflow\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n"),
        vec![
            "w.toml:1:6: bad workflow id `my workflow`: expected letters, digits, `_`, `-` or `.`, starting with a letter or digit"
        ]
    );
    assert_eq!(
        problems_of("id = \"W\"\n"),
        vec!["w.toml:1:6: workflow `W` has no tasks: expected at least one `[[tasks]]` entry"]
    );
}

#[test]
fn unparsable_and_empty_files_are_refused_and_others_still_load() {
    let (catalog, problems) = load(&[
        ("good.toml", &task_with("")),
        ("empty.toml", "# only a comment\n\n"),
        ("broken.toml", "id = \"X\"\n[[tasks]\n"),
        ("nested/deep.toml", "id = \"Deep\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n"),
    ]);
    assert_eq!(
        problems,
        vec![
            "broken.toml:2:9: unclosed array table, expected `]`",
            "empty.toml:1:1: the file is empty: expected a workflow with `id`, a `[trigger]` and `[[tasks]]`",
        ]
    );
    let ids: Vec<&str> = catalog.workflows.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, vec!["W", "Deep"]);
    assert_eq!(catalog.broken.len(), 2);
}

#[test]
fn the_registry_is_checked_too() {
    let (catalog, problems) = load(&[(
        "conveyor.toml",
        "[services.A]\ndescription = \"nothing to run\"\n[services.B]\ncommand = [\"x\"]\nurl = \"http://h\"\n[agents.C]\nurl = \"ftp://h\"\n[layers.L]\nitems = \"x\"\n[alerts]\nwebhook = \"nope\"\n[servces.D]\n",
    )]);
    assert_eq!(
        problems,
        vec![
            "conveyor.toml:12:2: unknown field `servces`, expected one of `services`, `agents`, `layers`, `alerts`, `on_interrupt`, `retention`, `max_output_size`, `max_log_size`, `max_parallel_tasks`, `env`, `metrics`, `store`"
        ]
    );
    assert!(catalog.registry.services.is_empty());
    let (catalog, problems) = load(&[(
        "conveyor.toml",
        "[services.A]\ndescription = \"nothing to run\"\n[services.B]\ncommand = [\"x\"]\nurl = \"http://h\"\n[agents.C]\nurl = \"ftp://h\"\n[layers.L]\nitems = \"x\"\n[alerts]\nwebhook = \"nope\"\n",
    )]);
    assert_eq!(
        problems,
        vec![
            "conveyor.toml:1:1: service `A` has neither `command` nor `url`: expected exactly one",
            "conveyor.toml:5:7: service `B` has both `command` and `url`: expected exactly one",
            "conveyor.toml:7:7: bad `url` `ftp://h`: expected an http:// or https:// address",
            "conveyor.toml:8:1: layer `L` has neither `rules` nor `approval`: expected at least one",
            "conveyor.toml:11:11: bad `alerts.webhook` `nope`: expected an http:// or https:// address",
        ]
    );
    assert!(catalog.registry.services.is_empty() && catalog.registry.agents.is_empty());
}

#[test]
fn a_gates_timeout_and_what_it_does_are_checked_and_kept() {
    let good = "[layers.Gate]\napproval = \"item.amount > 10\"\nshow = [\"id\", \"amount\"]\napproval_timeout = \"24h\"\non_timeout = \"approve\"\n";
    let (catalog, problems) = load(&[("conveyor.toml", good)]);
    assert!(problems.is_empty(), "{problems:?}");
    let gate = &catalog.registry.layers["Gate"];
    assert_eq!(gate.show, vec!["id", "amount"]);
    assert_eq!(gate.approval_timeout, Some(Duration::from_secs(24 * 3600)));
    assert_eq!(gate.on_timeout, OnTimeout::Approve);
    let bad = "[layers.Gate]\napproval = \"item.amount > 10\"\napproval_timeout = \"soon\"\non_timeout = \"shrug\"\n[layers.Rules]\nrules = [ { name = \"r\", expr = \"true\" } ]\napproval_timeout = \"1h\"\n";
    let (_, problems) = load(&[("conveyor.toml", bad)]);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("conveyor.toml:3:20: bad duration for `approval_timeout` of layer `Gate`: "),
        "{}",
        problems[0]
    );
    assert_eq!(
        problems[1],
        "conveyor.toml:4:14: bad `on_timeout` of layer `Gate` `shrug`: expected one of `reject`, `approve`"
    );
    assert_eq!(
        problems[2],
        "conveyor.toml:7:20: layer `Rules` has `approval_timeout` but no `approval`: nothing is ever held"
    );
}

#[test]
fn a_single_file_is_checked_against_the_registry_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("conveyor.toml"), REGISTRY).unwrap();
    fs::write(dir.path().join("w.toml"), "id = \"W\"\n[[tasks]]\nname = \"A\"\nservice = \"Fetch\"\n").unwrap();
    let catalog = load_file(&dir.path().join("w.toml"));
    assert_eq!(catalog.problem_count(), 0);
    assert_eq!(catalog.workflows.len(), 1);
    let missing = load_file(Path::new("/nonexistent/w.toml"));
    assert_eq!(missing.problems().next().unwrap().line, 1);
    assert!(missing.problems().next().unwrap().message.starts_with("cannot read the file: "));
}

#[test]
fn the_bundled_workflows_folder_is_valid() {
    let catalog = load_folder(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/workflows")));
    let problems: Vec<String> = catalog.problems().map(ToString::to_string).collect();
    assert_eq!(problems, Vec::<String>::new());
    assert!(catalog.workflows.len() >= 4);
}

#[test]
fn output_and_log_limits_are_sizes_on_tasks_and_in_the_registry() {
    let (catalog, problems) = load(&[
        ("conveyor.toml", "max_output_size = \"1 MiB\"\nmax_log_size = \"10MiB\"\n"),
        ("w.toml", &task_with("max_output_size = \"64 KiB\"")),
    ]);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!((catalog.registry.max_output_size, catalog.registry.max_log_size), (Some(1 << 20), Some(10 << 20)));
    let task = &catalog.workflow("W").unwrap().tasks[0];
    assert_eq!((task.max_output_size, task.max_log_size), (Some(64 << 10), None), "unset follows the registry");
    assert_eq!(
        problems_of(&task_with("max_log_size = \"100 MB\"")),
        vec![
            "w.toml:5:16: bad size for `max_log_size`: `100 MB`: expected a whole number and a unit such as `16 MiB`, `512KiB`, `1 GiB` or `4096 B`"
        ]
    );
}

/// `when = <text>` as a TOML basic string, whatever the text holds.
fn when(text: &str) -> String {
    task_with(&format!("when = {}", toml::Value::from(text)))
}

const CEL_SYNTAX: &str = "Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}";

#[test]
fn a_when_that_does_not_parse_is_refused_at_validation_not_at_run_time() {
    assert_eq!(
        problems_of(&when("(((")),
        vec![format!("w.toml:5:8: bad CEL expression `(((` in `when` of task `T`: {CEL_SYNTAX} (at character 4)")]
    );
    assert_eq!(
        problems_of(&when("input.x\n  && (")),
        vec![format!(
            "w.toml:5:8: bad CEL expression `input.x\\n  && (` in `when` of task `T`: {CEL_SYNTAX} (line 2, column 7)"
        )]
    );
    assert_eq!(problems_of(&when("size(input.applications) > 0 && params.mode == 'full'")), Vec::<String>::new());
}

#[test]
fn a_hundred_thousand_nested_parentheses_are_refused_before_the_parser_sees_them() {
    let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    // On a 1 MiB stack, which a debug build of the parser overflows within six levels of parentheses.
    let problems = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || problems_of(&when(&deep)))
        .unwrap()
        .join()
        .expect("no panic");
    assert_eq!(
        problems,
        vec![format!(
            "w.toml:5:8: bad CEL expression `{}…` in `when` of task `T`: brackets nest more than 64 deep (at character 65); expected at most 64",
            "(".repeat(40)
        )]
    );
    // Exactly at the limit is accepted, and brackets inside a string do not count.
    let at_limit = format!("{}1{} == 1", "(".repeat(64), ")".repeat(64));
    assert_eq!(compile_expression(&at_limit).err(), None);
    assert_eq!(compile_expression(&format!("input.name == '{}'", "(".repeat(200))).err(), None);
}

#[test]
fn an_expression_longer_than_4096_characters_is_refused() {
    let long = format!("input.a == 1{}", " || input.a == 1".repeat(300));
    assert_eq!(
        problems_of(&when(&long)),
        vec![
            "w.toml:5:8: bad CEL expression `input.a == 1 || input.a == 1 || input.a …` in `when` of task `T`: it is 4812 characters long; expected at most 4096"
        ]
    );
}

#[test]
fn comprehensions_nested_three_deep_are_refused_and_two_or_a_chain_are_not() {
    assert_eq!(
        problems_of(&when("input.a.map(x, input.b.map(y, input.c.map(z, x + y + z))).size() > 0")),
        vec![
            "w.toml:5:8: bad CEL expression `input.a.map(x, input.b.map(y, input.c.ma…` in `when` of task `T`: it nests comprehensions (`map`, `filter`, `all`, `exists`, `exists_one`) 3 deep; expected at most 2, as each level multiplies the work"
        ]
    );
    assert_eq!(compile_expression("input.a.all(x, input.b.exists(y, x == y))").err(), None);
    assert_eq!(compile_expression("input.a.map(x, x).filter(x, x > 1).map(x, x).exists(x, x > 2)").err(), None);
}

#[test]
fn a_long_chain_of_operators_is_parsed_off_the_callers_stack_and_refused_as_too_deep() {
    let chain = format!("1{}", "+1".repeat(2047));
    // 256 KiB would not hold the parser's recursion through 2047 operators; it runs on a thread of its own.
    let error = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || compile_expression(&chain).err())
        .unwrap()
        .join()
        .expect("no stack overflow, no panic");
    assert_eq!(
        error.as_deref(),
        Some(
            "bad CEL expression `1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+…`: it is nested 2048 operations deep; expected at most 64: split it into smaller conditions"
        )
    );
    let ternaries = format!("{}1", "true ? 1 : ".repeat(120));
    assert_eq!(
        compile_expression(&ternaries).err().as_deref(),
        Some(
            "bad CEL expression `true ? 1 : true ? 1 : true ? 1 : true ? …`: it nests too deeply for the CEL parser: expected fewer nested `? :`, brackets or calls"
        )
    );
}

#[test]
fn bad_rules_and_approvals_in_the_registry_point_at_the_expression() {
    let registry = "[layers.Gate]\nitems = \"applications\"\nrules = [\n  { name = \"eligible\", expr = \"item.score >=\" },\n  { name = \"fine\", expr = \"item.score >= 0.7\" },\n]\napproval = \"item.amount.map(a, a.map(b, b.map(c, c)))\"\n";
    let (_, problems) = load(&[("conveyor.toml", registry)]);
    assert_eq!(
        problems,
        vec![
            format!(
                "conveyor.toml:4:31: bad CEL expression `item.score >=` in rule `eligible` of layer `Gate`: {CEL_SYNTAX} (at character 14)"
            ),
            "conveyor.toml:7:12: bad CEL expression `item.amount.map(a, a.map(b, b.map(c, c))…` in `approval` of layer `Gate`: it nests comprehensions (`map`, `filter`, `all`, `exists`, `exists_one`) 3 deep; expected at most 2, as each level multiplies the work".to_string(),
        ]
    );
}

/// A workflow of `count` tasks; each depends on the one before when `chain`, else they run in order.
fn generated_workflow(count: usize, chain: bool) -> String {
    let mut text = String::from("id = \"Big\"\n");
    for index in 0..count {
        text.push_str(&format!("[[tasks]]\nname = \"T{index}\"\nrun = \"true\"\n"));
        if chain && index > 0 {
            text.push_str(&format!("depends_on = [\"T{}\"]\n", index - 1));
        }
        if index % 1000 == 7 {
            text.push_str("when = \"size(input) > 0\"\n");
        }
    }
    text
}

#[test]
fn a_workflow_of_fifty_thousand_tasks_loads_without_problems() {
    let text = generated_workflow(50_000, false);
    let workflow = parse_workflow(Path::new("big.toml"), &text, &Registry::default()).unwrap();
    assert_eq!(workflow.tasks.len(), 50_000);
    assert_eq!(workflow.tasks[49_999].line, 2 + 3 * 49_999 + 50);
    assert!(!workflow.dag);
}

#[test]
fn a_depends_on_chain_of_ten_thousand_tasks_loads_and_a_cycle_at_its_end_is_found() {
    // On a 512 KiB stack: a search that recursed once per task would overflow it.
    std::thread::Builder::new().stack_size(512 * 1024).spawn(chain_of_ten_thousand).unwrap().join().unwrap();
}

fn chain_of_ten_thousand() {
    let text = generated_workflow(10_000, true);
    let workflow = parse_workflow(Path::new("chain.toml"), &text, &Registry::default()).unwrap();
    assert_eq!(workflow.tasks.len(), 10_000);
    assert!(workflow.dag);
    let looped = text.replacen(
        "name = \"T0\"\nrun = \"true\"\n",
        "name = \"T0\"\nrun = \"true\"\ndepends_on = [\"T9999\"]\n",
        1,
    );
    let problems = parse_workflow(Path::new("chain.toml"), &looped, &Registry::default()).unwrap_err();
    assert_eq!(
        problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec![
            "chain.toml:5:15: cycle in `depends_on`: T0 → T9999 → T9998 → T9997 → T9996 → … → T4 → T3 → T2 → T1 → T0 (10000 tasks)"
        ]
    );
}

#[test]
fn tripled_quotes_do_not_shorten_how_long_an_expression_counts() {
    // Each empty ''' ''' literal moves the scan six characters in two steps: the length is the text's.
    let long = format!("''''''{}", " + ''''''".repeat(500));
    let problems = problems_of(&when(&long));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].ends_with("characters long; expected at most 4096"), "{problems:?}");
}

#[test]
fn an_llm_agent_is_checked_where_it_is_written_and_reads_its_prompt_file_without_a_network_call() {
    let registry = r#"[agents.Scorer]
description = "scores"
llm = { url = "http://127.0.0.1:9/v1", model = "m", prompt_file = "prompts/score.md", items = "applications", output_schema = { type = "object", required = ["score"] } }
[agents.NoPrompt]
llm = { url = "http://h/v1", model = "m" }
[services.Wrong]
llm = { url = "http://h/v1", model = "m", prompt = "p" }
[agents.BadSchema]
llm = { url = "http://h/v1", model = "m", prompt = "p", output_schema = { type = "float" } }
[agents.Missing]
llm = { url = "http://h/v1", model = "m", prompt_file = "nowhere.md", max_concurrency = 0 }
[agents.Nothing]
description = "none"
"#;
    let (catalog, problems) = load(&[("conveyor.toml", registry), ("prompts/score.md", "Score it from 0 to 1.\n")]);
    let (unreadable, problems): (Vec<String>, Vec<String>) =
        problems.into_iter().partition(|problem| problem.contains("cannot read `prompt_file`"));
    assert_eq!(
        problems,
        vec![
            "conveyor.toml:5:7: agent `NoPrompt`'s `llm` has neither `prompt` nor `prompt_file`: expected one",
            "conveyor.toml:7:7: service `Wrong` has `llm`: a language model is an agent, under [agents.Wrong]",
            "conveyor.toml:9:73: bad `output_schema`: type: unknown type \"float\", expected one of object, array, string, number, integer, boolean, null",
            "conveyor.toml:11:89: bad `max_concurrency` 0: expected a whole number from 1 to 256",
            "conveyor.toml:12:1: agent `Nothing` has none of `command`, `url` or `llm`: expected exactly one",
        ]
    );
    assert_eq!(unreadable.len(), 1);
    assert!(
        unreadable[0].starts_with("conveyor.toml:11:57: cannot read `prompt_file` ")
            && unreadable[0].contains("nowhere.md")
    );
    let Target::Llm(agent) = &catalog.registry.agents["Scorer"].target else { panic!("an LLM agent") };
    assert_eq!(agent.prompt, "Score it from 0 to 1.\n");
    assert_eq!((agent.items.as_deref(), agent.max_concurrency), (Some("applications"), DEFAULT_LLM_CONCURRENCY));
}

#[test]
fn parallel_bounds_are_whole_numbers_checked_where_they_are_written() {
    let registry = "max_parallel_tasks = 0\n[services.S]\ncommand = [\"true\"]\nmax_concurrency = 2\n[services.T]\ncommand = [\"true\"]\nmax_concurrency = -1\n";
    let workflow = "id = \"W\"\nmax_parallel = 3\n[[tasks]]\nname = \"A\"\nservice = \"S\"\n";
    let (catalog, problems) = load(&[("conveyor.toml", registry), ("w.toml", workflow)]);
    assert_eq!(
        problems,
        vec![
            "conveyor.toml:1:22: bad `max_parallel_tasks` 0: expected a whole number from 1 to 100000",
            "conveyor.toml:7:19: bad `max_concurrency` -1: expected a whole number from 1 to 100000",
        ]
    );
    assert_eq!(catalog.registry.services["S"].max_concurrency, Some(2));
    assert_eq!(catalog.workflows[0].max_parallel, Some(3));
}

#[test]
fn the_metrics_address_is_checked_where_it_is_written_and_a_bare_port_stays_on_loopback() {
    let workflow = "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = 'true'\n";
    let (catalog, problems) = load(&[("conveyor.toml", "[metrics]\nlisten = \"9464\"\n"), ("w.toml", workflow)]);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(catalog.registry.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    let (catalog, problems) = load(&[("conveyor.toml", "[metrics]\nlisten = \"everywhere\"\n"), ("w.toml", workflow)]);
    assert_eq!(
        problems,
        vec![format!(
            "conveyor.toml:2:10: `metrics.listen`: bad listen address `everywhere`: {}",
            crate::listen::EXPECTED
        )]
    );
    assert_eq!(catalog.registry.metrics_listen, None);
    let (_, problems) = load(&[("conveyor.toml", "[metrics]\nport = 9464\n"), ("w.toml", workflow)]);
    assert_eq!(problems, vec!["conveyor.toml:2:1: unknown field `port`, expected `listen`"]);
}

#[test]
fn secret_references_in_env_are_checked_where_they_are_written() {
    let registry = "[env]\nGOOD = \"${env:TOKEN}\"\nBAD = \"${vault:x}\"\n[services.S]\ncommand = [\"true\"]\nenv = { K = \"${env:}\" }\n";
    let workflow = task_with("env = { A = \"${file:/run/secrets/a}\", B = \"${file:}\", C = \"${env:X\" }");
    let (_, problems) = load(&[("conveyor.toml", registry), ("w.toml", &workflow)]);
    assert_eq!(
        problems,
        vec![
            "conveyor.toml:3:7: bad secret reference `${vault:x}`: expected `${env:NAME}` or `${file:PATH}` as the whole value (env BAD of [env])",
            "conveyor.toml:6:13: bad secret reference `${env:}`: expected an environment variable name (letters, digits, `_`) after `env:` (env K of service `S`)",
            "w.toml:5:43: bad secret reference `${file:}`: expected a file path after `file:` (env B of task `T`)",
            "w.toml:5:59: bad secret reference `${env:X`: expected `${env:NAME}` or `${file:PATH}` as the whole value (env C of task `T`)",
        ]
    );
}

#[test]
fn the_registry_env_is_read_with_its_references_as_written() {
    let registry = "[env]\nREGION = \"eu\"\nTOKEN = \"${env:API_TOKEN}\"\n";
    let (catalog, problems) = load(&[("conveyor.toml", registry), ("w.toml", &task_with(""))]);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(catalog.registry.env.get("REGION").map(String::as_str), Some("eu"));
    assert_eq!(catalog.registry.env.get("TOKEN").map(String::as_str), Some("${env:API_TOKEN}"), "read when it runs");
    let (_, problems) = load(&[("conveyor.toml", "[env]\n\"A-B\" = \"x\"\n"), ("w.toml", &task_with(""))]);
    assert_eq!(
        problems,
        vec!["conveyor.toml:2:9: bad environment variable name `A-B` in [env]: expected letters, digits and `_`"]
    );
}
