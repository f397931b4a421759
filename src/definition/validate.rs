//! Turns files as written (`raw`) into checked definitions (`model`), collecting every problem with
//! the line and column it comes from rather than stopping at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Range, RangeInclusive};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::expression;
use super::model::*;
use super::problem::{LineIndex, Problem};
use super::raw::*;
use crate::schedule::{Schedule, Zone};

pub const DEFAULT_KEEP_RUNS: u32 = 100;
pub const DEFAULT_MAX_ACTIVE_RUNS: u32 = 16;
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(10);
pub const DEFAULT_BACKOFF: f64 = 2.0;
/// The longest duration a definition may give (humantime's `100y`): longer is a typo, and the engine adds
/// durations to dates, which must stay representable.
pub const MAX_DURATION: Duration = Duration::from_secs(36_525 * 24 * 60 * 60);
/// The most retries a task may ask for: an hour apart at most, that is already weeks of trying.
pub const MAX_RETRIES: u32 = 1000;

const TASK_KINDS: &str = "`service`, `agent`, `layer`, `run` or `command`";

/// How many names a message lists before it says how many there are in all.
const NAMES_SHOWN: usize = 10;

pub(crate) struct Checker<'a> {
    file: &'a Path,
    source: &'a str,
    lines: LineIndex,
    /// What compiling each distinct expression text gave: a generated file repeats the same `when`.
    compiled: BTreeMap<String, Result<(), String>>,
    pub problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Checker { file, source, lines: LineIndex::new(source), compiled: BTreeMap::new(), problems: Vec::new() }
    }

    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.problems.push(Problem::at_indexed(self.file, self.source, &self.lines, span.start, message));
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        self.lines.locate(self.source, span.start).0
    }

    /// Compiles a CEL expression as a run would, reporting at the expression what stops it; `place` says
    /// which expression it is.
    fn expression(&mut self, value: &Spanned<String>, place: &str) {
        let text = value.get_ref();
        let outcome = match self.compiled.get(text.as_str()) {
            Some(outcome) => outcome.clone(),
            None => {
                let outcome = expression::compile(text).map(drop);
                self.compiled.insert(text.clone(), outcome.clone());
                outcome
            }
        };
        if let Err(reason) = outcome {
            self.at(value.span(), format!("bad CEL expression `{}` in {place}: {reason}", expression::excerpt(text)));
        }
    }

    fn duration(&mut self, value: &Option<Spanned<String>>, what: &str) -> Option<Duration> {
        let value = value.as_ref()?;
        match parse_duration(value.get_ref()) {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.at(value.span(), format!("bad duration for `{what}`: {message}"));
                None
            }
        }
    }

    fn size(&mut self, value: &Option<Spanned<String>>, what: &str) -> Option<u64> {
        let value = value.as_ref()?;
        super::parse_size(value.get_ref())
            .map_err(|message| self.at(value.span(), format!("bad size for `{what}`: {message}")))
            .ok()
    }

    fn whole_number(
        &mut self,
        value: &Option<Spanned<i64>>,
        what: &str,
        range: RangeInclusive<u32>,
        default: u32,
    ) -> u32 {
        let Some(value) = value else { return default };
        match u32::try_from(*value.get_ref()) {
            Ok(number) if range.contains(&number) => number,
            _ => {
                let expected = match (range.start(), range.end()) {
                    (minimum, &u32::MAX) => format!("a whole number of {minimum} or more"),
                    (minimum, maximum) => format!("a whole number from {minimum} to {maximum}"),
                };
                self.at(value.span(), format!("bad `{what}` {}: expected {expected}", value.get_ref()));
                default
            }
        }
    }

    /// An `env` table's values, checked as secret references where they look like one (`${…}`).
    fn env(&mut self, env: BTreeMap<String, Spanned<String>>, place: &str) -> BTreeMap<String, String> {
        let mut checked = BTreeMap::new();
        for (name, value) in env {
            if let Err(problem) = super::parse_reference(value.get_ref()) {
                self.at(value.span(), format!("{problem} (env {name} of {place})"));
            }
            checked.insert(name, value.into_inner());
        }
        checked
    }

    fn name(&mut self, value: &Spanned<String>, what: &str) {
        if !is_name(value.get_ref()) {
            self.at(
                value.span(),
                format!(
                    "bad {what} `{}`: expected letters, digits, `_`, `-` or `.`, starting with a letter or digit",
                    value.get_ref()
                ),
            );
        }
    }

    pub fn registry(&mut self, raw: RawRegistry) -> Registry {
        let mut registry = Registry::default();
        for (kind, entries, out) in
            [("service", raw.services, &mut registry.services), ("agent", raw.agents, &mut registry.agents)]
        {
            for (name, endpoint) in entries {
                if let Some(endpoint) = self.endpoint(kind, &name, endpoint) {
                    out.insert(name, endpoint);
                }
            }
        }
        for (name, layer) in raw.layers {
            let span = layer.span();
            let layer = layer.into_inner();
            if layer.rules.is_empty() && layer.approval.is_none() {
                self.at(
                    span.clone(),
                    format!("layer `{name}` has neither `rules` nor `approval`: expected at least one"),
                );
            }
            let mut rule_names = BTreeSet::new();
            let mut rules = Vec::new();
            for rule in layer.rules {
                let span = rule.span();
                let rule = rule.into_inner();
                if !rule_names.insert(rule.name.clone()) {
                    self.at(span.clone(), format!("duplicate rule name `{}` in layer `{name}`", rule.name));
                }
                if rule.expr.get_ref().trim().is_empty() {
                    self.at(
                        rule.expr.span(),
                        format!(
                            "rule `{}` of layer `{name}` has an empty `expr`: expected a CEL expression",
                            rule.name
                        ),
                    );
                } else {
                    self.expression(&rule.expr, &format!("rule `{}` of layer `{name}`", rule.name));
                }
                rules.push(Rule { name: rule.name, expr: rule.expr.into_inner() });
            }
            if let Some(approval) = &layer.approval {
                self.expression(approval, &format!("`approval` of layer `{name}`"));
            }
            let approval_timeout =
                self.duration(&layer.approval_timeout, &format!("approval_timeout` of layer `{name}"));
            let on_timeout = self.choice(
                &layer.on_timeout,
                &format!("on_timeout` of layer `{name}"),
                OnTimeout::Reject,
                ON_TIMEOUT_CHOICES,
            );
            if approval_timeout.is_some() && layer.approval.is_none() {
                let span = layer.approval_timeout.as_ref().map_or(span.clone(), Spanned::span);
                self.at(span, format!("layer `{name}` has `approval_timeout` but no `approval`: nothing is ever held"));
            }
            let approval = layer.approval.map(Spanned::into_inner);
            registry.layers.insert(
                name,
                Layer {
                    description: layer.description,
                    items: layer.items,
                    rules,
                    approval,
                    show: layer.show,
                    approval_timeout,
                    on_timeout,
                },
            );
        }
        if let Some(retention) = raw.retention {
            let retention = retention.into_inner();
            let defaults = Retention::default();
            registry.retention = Retention {
                alerts: self.whole_number(&retention.alerts, "retention.alerts", 1..=u32::MAX, defaults.alerts),
                audit: self.whole_number(&retention.audit, "retention.audit", 1..=u32::MAX, defaults.audit),
                fires: self.whole_number(&retention.fires, "retention.fires", 1..=u32::MAX, defaults.fires),
                processed_files: self
                    .duration(&retention.processed_files, "retention.processed_files")
                    .unwrap_or(defaults.processed_files),
            };
        }
        registry.on_interrupt =
            self.choice(&raw.on_interrupt, "on_interrupt", OnInterrupt::Resume, ON_INTERRUPT_CHOICES);
        registry.max_output_size = self.size(&raw.max_output_size, "max_output_size");
        registry.max_log_size = self.size(&raw.max_log_size, "max_log_size");
        registry.max_parallel_tasks = raw
            .max_parallel_tasks
            .is_some()
            .then(|| self.whole_number(&raw.max_parallel_tasks, "max_parallel_tasks", 1..=100_000, 1));
        for name in raw.env.keys() {
            if !is_identifier(name) {
                let span = raw.env[name].span();
                self.at(
                    span,
                    format!("bad environment variable name `{name}` in [env]: expected letters, digits and `_`"),
                );
            }
        }
        registry.env = self.env(raw.env, "[env]");
        if let Some(listen) = raw.metrics.and_then(|metrics| metrics.into_inner().listen) {
            match crate::listen::parse_listen(listen.get_ref()) {
                Ok(address) => registry.metrics_listen = Some(address),
                Err(error) => self.at(listen.span(), format!("`metrics.listen`: {error}")),
            }
        }
        if let Some(store) = raw.store {
            // A reference is checked for its shape only: the variable or file may exist only where engines run.
            let checked = match super::parse_reference(store.get_ref()) {
                Ok(Some(_)) => Ok(()),
                Ok(None) => crate::store::StoreLocation::parse(store.get_ref()).map(drop),
                Err(problem) => Err(problem),
            };
            match checked {
                Ok(()) => registry.store = Some(store.into_inner()),
                Err(problem) => self.at(store.span(), format!("bad `store`: {problem}")),
            }
        }
        if let Some(alerts) = raw.alerts {
            let alerts = alerts.into_inner();
            if let Some(command) = &alerts.command
                && command.get_ref().is_empty()
            {
                self.at(command.span(), "`alerts.command` is empty: expected a program and its arguments");
            }
            if let Some(webhook) = &alerts.webhook {
                self.url(webhook, "alerts.webhook");
            }
            registry.alerts = Alerts {
                command: alerts.command.map(Spanned::into_inner),
                webhook: alerts.webhook.map(Spanned::into_inner),
            };
        }
        registry
    }

    fn endpoint(&mut self, kind: &str, name: &str, raw: Spanned<RawEndpoint>) -> Option<Endpoint> {
        let span = raw.span();
        let raw = raw.into_inner();
        let timeout = self.duration(&raw.timeout, "timeout");
        let max_concurrency = raw
            .max_concurrency
            .is_some()
            .then(|| self.whole_number(&raw.max_concurrency, "max_concurrency", 1..=100_000, 1));
        let env = self.env(raw.env, &format!("{kind} `{name}`"));
        if let Some(llm) = raw.llm {
            if kind != "agent" {
                self.at(
                    llm.span(),
                    format!("{kind} `{name}` has `llm`: a language model is an agent, under [agents.{name}]"),
                );
                return None;
            }
            if let Some(other) = raw.command.as_ref().map(Spanned::span).or(raw.url.as_ref().map(Spanned::span)) {
                self.at(other, format!("agent `{name}` has `llm` and also `command` or `url`: expected exactly one"));
                return None;
            }
            let agent = self.llm(name, llm)?;
            return Some(Endpoint {
                description: raw.description,
                target: Target::Llm(Arc::new(agent)),
                env,
                timeout,
                max_concurrency,
            });
        }
        let target = match (raw.command, raw.url) {
            (Some(command), None) if command.get_ref().is_empty() => {
                self.at(
                    command.span(),
                    format!("{kind} `{name}` has an empty `command`: expected a program and its arguments"),
                );
                None
            }
            (Some(command), None) => Some(Target::Command(command.into_inner())),
            (None, Some(url)) => self.url(&url, "url").then(|| Target::Url(url.into_inner())),
            (Some(_), Some(url)) => {
                self.at(url.span(), format!("{kind} `{name}` has both `command` and `url`: expected exactly one"));
                None
            }
            (None, None) => {
                let choices = if kind == "agent" { "`command`, `url` or `llm`" } else { "`command` nor `url`" };
                let choices = if kind == "agent" { format!("none of {choices}") } else { format!("neither {choices}") };
                self.at(span, format!("{kind} `{name}` has {choices}: expected exactly one"));
                None
            }
        }?;
        Some(Endpoint { description: raw.description, target, env, timeout, max_concurrency })
    }

    /// An LLM agent: its prompt read now (from `prompt_file`, relative to the workflows folder), its schema
    /// checked; no network call.
    fn llm(&mut self, name: &str, raw: Spanned<RawLlm>) -> Option<LlmAgent> {
        let span = raw.span();
        let raw = raw.into_inner();
        let url_ok = self.url(&raw.url, "llm.url");
        let prompt = match (raw.prompt, raw.prompt_file) {
            (Some(prompt), None) => Some(prompt.into_inner()),
            (None, Some(file)) => {
                let path = self.file.parent().unwrap_or(Path::new(".")).join(file.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(text) => Some(text),
                    Err(error) => {
                        self.at(file.span(), format!("cannot read `prompt_file` {}: {error}", path.display()));
                        None
                    }
                }
            }
            (Some(_), Some(file)) => {
                self.at(file.span(), format!("agent `{name}` has both `prompt` and `prompt_file`: expected one"));
                None
            }
            (None, None) => {
                self.at(span, format!("agent `{name}`'s `llm` has neither `prompt` nor `prompt_file`: expected one"));
                None
            }
        };
        let output_schema = raw.output_schema.and_then(|schema| {
            let span = schema.span();
            let schema = schema.into_inner();
            match super::schema::check_schema(&schema) {
                Ok(()) => Some(schema),
                Err(problem) => {
                    self.at(span, format!("bad `output_schema`: {problem}"));
                    None
                }
            }
        });
        let max_concurrency =
            self.whole_number(&raw.max_concurrency, "max_concurrency", 1..=256, DEFAULT_LLM_CONCURRENCY as u32)
                as usize;
        if let Some(temperature) = &raw.temperature
            && !(0.0..=2.0).contains(temperature.get_ref())
        {
            self.at(temperature.span(), format!("bad `temperature` {}: expected 0 to 2", temperature.get_ref()));
        }
        if let Some(variable) = &raw.api_key_env
            && (variable.get_ref().is_empty() || variable.get_ref().contains('='))
        {
            self.at(variable.span(), "bad `api_key_env`: expected the name of an environment variable");
        }
        Some(LlmAgent {
            url: url_ok.then(|| raw.url.into_inner())?,
            model: raw.model.into_inner(),
            api_key_env: raw.api_key_env.map(Spanned::into_inner),
            prompt: prompt?,
            items: raw.items.map(Spanned::into_inner),
            output_schema,
            max_concurrency,
            temperature: raw.temperature.map(Spanned::into_inner),
        })
    }

    fn url(&mut self, url: &Spanned<String>, what: &str) -> bool {
        let text = url.get_ref();
        let ok = (text.starts_with("http://") || text.starts_with("https://")) && text.len() > "https://".len();
        if !ok {
            self.at(url.span(), format!("bad `{what}` `{text}`: expected an http:// or https:// address"));
        }
        ok
    }

    pub fn workflow(&mut self, raw: RawWorkflow, registry: &Registry) -> Option<Workflow> {
        let before = self.problems.len();
        self.name(&raw.id, "workflow id");
        let trigger = self.trigger(raw.trigger);
        let params = self.params(raw.params);
        let overlap = self.choice(
            &raw.overlap,
            "overlap",
            Overlap::Skip,
            &[
                ("skip", Overlap::Skip),
                ("queue", Overlap::Queue),
                ("cancel_previous", Overlap::CancelPrevious),
                ("allow", Overlap::Allow),
            ],
        );
        let catchup = self.choice(
            &raw.catchup,
            "catchup",
            Catchup::Latest,
            &[("none", Catchup::None), ("latest", Catchup::Latest), ("all", Catchup::All)],
        );
        let max_active_runs =
            self.whole_number(&raw.max_active_runs, "max_active_runs", 1..=u32::MAX, DEFAULT_MAX_ACTIVE_RUNS);
        let keep_runs = self.whole_number(&raw.keep_runs, "keep_runs", 1..=u32::MAX, DEFAULT_KEEP_RUNS);
        let max_parallel =
            raw.max_parallel.is_some().then(|| self.whole_number(&raw.max_parallel, "max_parallel", 1..=100_000, 1));
        let on_interrupt = raw
            .on_interrupt
            .is_some()
            .then(|| self.choice(&raw.on_interrupt, "on_interrupt", OnInterrupt::Resume, ON_INTERRUPT_CHOICES));
        let timeout = self.duration(&raw.timeout, "timeout");
        let jitter = self.duration(&raw.jitter, "jitter");
        let on_failure = raw.on_failure.and_then(|task| self.handler(task, "on_failure", registry));
        let on_success = raw.on_success.and_then(|task| self.handler(task, "on_success", registry));
        let on_cancel = raw.on_cancel.and_then(|task| self.handler(task, "on_cancel", registry));
        let tasks = match raw.tasks {
            Some(tasks) if tasks.get_ref().is_empty() => {
                self.at(tasks.span(), "`tasks` is empty: expected at least one task");
                Vec::new()
            }
            Some(tasks) => self.tasks(tasks.into_inner(), registry),
            None => {
                self.at(
                    raw.id.span(),
                    format!("workflow `{}` has no tasks: expected at least one `[[tasks]]` entry", raw.id.get_ref()),
                );
                Vec::new()
            }
        };
        if self.problems.len() > before {
            return None;
        }
        Some(Workflow {
            id: raw.id.into_inner(),
            description: raw.description,
            file: self.file.to_path_buf(),
            source: Arc::from(self.source),
            trigger: trigger?,
            params,
            overlap,
            catchup,
            max_active_runs,
            max_parallel,
            timeout,
            jitter,
            keep_runs,
            on_interrupt,
            on_failure,
            on_success,
            on_cancel,
            dag: tasks.iter().any(|task| !task.depends_on.is_empty()),
            tasks,
        })
    }

    fn choice<T: Copy>(&mut self, value: &Option<Spanned<String>>, what: &str, default: T, options: &[(&str, T)]) -> T {
        let Some(value) = value else { return default };
        match options.iter().find(|(name, _)| name == value.get_ref()) {
            Some((_, choice)) => *choice,
            None => {
                let names: Vec<String> = options.iter().map(|(name, _)| format!("`{name}`")).collect();
                self.at(
                    value.span(),
                    format!("bad `{what}` `{}`: expected one of {}", value.get_ref(), names.join(", ")),
                );
                default
            }
        }
    }

    fn trigger(&mut self, raw: Option<Spanned<RawTrigger>>) -> Option<Trigger> {
        let Some(raw) = raw else { return Some(Trigger::Manual) };
        let raw = raw.into_inner();
        let kind = raw.kind.get_ref().as_str();
        let misplaced = |key: &str, field: &Option<Spanned<String>>, allowed: &str| {
            field.as_ref().filter(|_| kind != allowed).map(|value| {
                (
                    value.span(),
                    format!("`{key}` does not apply to a `{kind}` trigger: it belongs to `type = \"{allowed}\"`"),
                )
            })
        };
        let stray: Vec<_> = [
            misplaced("cron", &raw.cron, "schedule"),
            misplaced("timezone", &raw.timezone, "schedule"),
            misplaced("watch", &raw.watch, "event"),
            misplaced("settle", &raw.settle, "event"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let valid_kind = matches!(kind, "schedule" | "event" | "manual");
        if valid_kind {
            for (span, message) in stray {
                self.at(span, message);
            }
        }
        match kind {
            "schedule" => {
                let zone = match &raw.timezone {
                    None => Some(Zone::Local),
                    Some(name) => Zone::parse(name.get_ref()).map_err(|message| self.at(name.span(), message)).ok(),
                };
                let Some(cron) = &raw.cron else {
                    self.at(raw.kind.span(), "a `schedule` trigger needs `cron`: expected e.g. `cron = \"0 2 * * *\"`");
                    return None;
                };
                let schedule = Schedule::parse(cron.get_ref(), zone.unwrap_or(Zone::Local));
                let schedule = schedule.map_err(|message| self.at(cron.span(), message)).ok()?;
                zone.map(|_| Trigger::Schedule(Box::new(schedule)))
            }
            "event" => {
                let Some(watch) = raw.watch else {
                    self.at(
                        raw.kind.span(),
                        "an `event` trigger needs `watch`: expected a file pattern such as `watch = \"inbox/*.json\"`",
                    );
                    return None;
                };
                if watch.get_ref().trim().is_empty() {
                    self.at(watch.span(), "`watch` is empty: expected a file pattern such as `inbox/*.json`");
                    return None;
                }
                let settle = self.duration(&raw.settle, "settle").unwrap_or(crate::trigger::files::DEFAULT_SETTLE);
                Some(Trigger::Event { watch: watch.into_inner(), settle })
            }
            "manual" => Some(Trigger::Manual),
            other => {
                self.at(
                    raw.kind.span(),
                    format!("unknown trigger type `{other}`: expected `schedule`, `event` or `manual`"),
                );
                None
            }
        }
    }

    fn params(&mut self, raw: BTreeMap<String, Spanned<toml::Value>>) -> Vec<Param> {
        let mut params = Vec::new();
        for (name, value) in raw {
            let span = value.span();
            if !is_identifier(&name) {
                self.at(
                    span.clone(),
                    format!("bad parameter name `{name}`: expected letters, digits and `_`, not starting with a digit"),
                );
                continue;
            }
            match self.param(&name, value.into_inner()) {
                Ok(param) => params.push(param),
                Err(message) => self.at(span, message),
            }
        }
        params
    }

    fn param(&mut self, name: &str, value: toml::Value) -> Result<Param, String> {
        let toml::Value::Table(mut table) = value else {
            let kind = scalar_type(&value).ok_or_else(|| {
                format!("bad parameter `{name}`: expected a default value (string, integer, float or boolean) or a table with `type`, `default`, `description`")
            })?;
            return Ok(Param { name: name.to_string(), kind, default: Some(to_json(value)), description: None });
        };
        let description = match table.remove("description") {
            None => None,
            Some(toml::Value::String(text)) => Some(text),
            Some(_) => return Err(format!("bad `description` of parameter `{name}`: expected a string")),
        };
        let default = table.remove("default");
        let kind = match table.remove("type") {
            Some(toml::Value::String(kind)) => match kind.as_str() {
                "string" => ParamType::String,
                "integer" | "int" => ParamType::Integer,
                "float" | "number" => ParamType::Float,
                "boolean" | "bool" => ParamType::Boolean,
                other => {
                    return Err(format!(
                        "bad type `{other}` of parameter `{name}`: expected `string`, `integer`, `float` or `boolean`"
                    ));
                }
            },
            Some(_) => return Err(format!("bad `type` of parameter `{name}`: expected a string such as \"integer\"")),
            None => match &default {
                Some(value) => scalar_type(value).ok_or_else(|| {
                    format!("bad `default` of parameter `{name}`: expected a string, integer, float or boolean")
                })?,
                None => ParamType::String,
            },
        };
        if let Some(key) = table.keys().next() {
            return Err(format!(
                "unknown key `{key}` in parameter `{name}`: expected `type`, `default` or `description`"
            ));
        }
        let default =
            match default {
                None => None,
                Some(value) => Some(coerce(&value, kind).ok_or_else(|| {
                    format!("`default` of parameter `{name}` is not a {}: got {}", kind.name(), value)
                })?),
            };
        Ok(Param { name: name.to_string(), kind, default, description })
    }

    fn handler(&mut self, raw: Spanned<RawTask>, role: &str, registry: &Registry) -> Option<Task> {
        if let Some(dependency) = raw.get_ref().depends_on.first() {
            self.at(
                dependency.span(),
                format!("`depends_on` does not apply to the `{role}` handler: it runs after the whole run"),
            );
        }
        self.task(raw, Some(role), registry)
    }

    fn tasks(&mut self, raw: Vec<Spanned<RawTask>>, registry: &Registry) -> Vec<Task> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut tasks = Vec::new();
        for raw_task in raw {
            if let Some(name) = &raw_task.get_ref().name {
                let line = self.line_of(&name.span());
                if let Some(first) = seen.get(name.get_ref()) {
                    self.at(
                        name.span(),
                        format!("duplicate task name `{}`: already used on line {first}", name.get_ref()),
                    );
                } else {
                    seen.insert(name.get_ref().clone(), line);
                }
            }
            let dependencies: Vec<Spanned<String>> = raw_task.get_ref().depends_on.clone();
            if let Some(task) = self.task(raw_task, None, registry) {
                tasks.push((task, dependencies));
            }
        }
        self.dependencies(&tasks, &seen);
        tasks.into_iter().map(|(task, _)| task).collect()
    }

    fn dependencies(&mut self, tasks: &[(Task, Vec<Spanned<String>>)], names: &BTreeMap<String, usize>) {
        let mut unknown = false;
        for (task, dependencies) in tasks {
            for dependency in dependencies {
                let target = dependency.get_ref();
                if target == &task.name {
                    self.at(dependency.span(), format!("task `{}` depends on itself", task.name));
                    unknown = true;
                } else if !names.contains_key(target) {
                    self.at(
                        dependency.span(),
                        format!(
                            "task `{}` depends on unknown task `{target}`: expected one of {}",
                            task.name,
                            listed(names.keys(), names.len())
                        ),
                    );
                    unknown = true;
                }
            }
        }
        if unknown {
            return;
        }
        if let Some(cycle) = find_cycle(tasks.iter().map(|(task, _)| task)) {
            let (_, dependencies) =
                tasks.iter().find(|(task, _)| task.name == cycle[0]).expect("a cycle starts at a task");
            let span = dependencies.iter().find(|d| d.get_ref() == &cycle[1]).map_or(0..0, Spanned::span);
            // A long cycle is shown by its ends: all ten thousand names of a chain would be one unreadable line.
            let shown = if cycle.len() > 2 * NAMES_SHOWN {
                let (head, tail) = (&cycle[..NAMES_SHOWN / 2], &cycle[cycle.len() - NAMES_SHOWN / 2..]);
                format!("{} → … → {} ({} tasks)", head.join(" → "), tail.join(" → "), cycle.len() - 1)
            } else {
                cycle.join(" → ")
            };
            self.at(span, format!("cycle in `depends_on`: {shown}"));
        }
    }

    fn task(&mut self, raw: Spanned<RawTask>, role: Option<&str>, registry: &Registry) -> Option<Task> {
        let span = raw.span();
        let line = self.line_of(&span);
        let raw = raw.into_inner();
        let before = self.problems.len();
        let name = match (&raw.name, role) {
            (Some(name), _) => {
                self.name(name, "task name");
                name.get_ref().clone()
            }
            (None, Some(role)) => role.to_string(),
            (None, None) => {
                self.at(span.clone(), "a task has no `name`: expected e.g. `name = \"Ingest\"`");
                String::from("?")
            }
        };
        let kind = self.task_kind(&raw, &name, span, registry);
        let retries = self.whole_number(&raw.retries, "retries", 0..=MAX_RETRIES, 0);
        let retry_delay = self.duration(&raw.retry_delay, "retry_delay").unwrap_or(DEFAULT_RETRY_DELAY);
        let timeout = self.duration(&raw.timeout, "timeout");
        let max_output_size = self.size(&raw.max_output_size, "max_output_size");
        let max_log_size = self.size(&raw.max_log_size, "max_log_size");
        let backoff = match &raw.backoff {
            // Refuses NaN too (it is in no range); quoted as written, as `1e300` would print 301 digits.
            Some(backoff) if !(1.0..=100.0).contains(backoff.get_ref()) => {
                let written = self.source.get(backoff.span()).unwrap_or_default().to_string();
                self.at(
                    backoff.span(),
                    format!("bad `backoff` {written}: expected a factor from 1.0 (fixed delay) to 100.0"),
                );
                DEFAULT_BACKOFF
            }
            Some(backoff) => *backoff.get_ref(),
            None => DEFAULT_BACKOFF,
        };
        for route in &raw.fallback {
            let name = route.get_ref();
            if !registry.services.contains_key(name) && !registry.agents.contains_key(name) {
                self.at(
                    route.span(),
                    format!(
                        "unknown fallback `{name}`: expected a service or agent defined in conveyor.toml{}",
                        known(
                            registry.services.keys().chain(registry.agents.keys()),
                            registry.services.len() + registry.agents.len(),
                        )
                    ),
                );
            }
        }
        if matches!(kind, Some(TaskKind::Layer(_))) && !raw.fallback.is_empty() {
            self.at(
                raw.fallback[0].span(),
                format!("task `{name}` is a governance layer: `fallback` applies to services, agents and commands"),
            );
        }
        if let Some(when) = &raw.when {
            if when.get_ref().trim().is_empty() {
                self.at(
                    when.span(),
                    "`when` is empty: expected a CEL expression over `input`, such as `size(input.applications) > 0`",
                );
            } else {
                self.expression(when, &format!("`when` of task `{name}`"));
            }
        }
        for key in raw.env.keys() {
            if !is_identifier(key) {
                let start = self.lines.line_start(self.source, line);
                self.at(
                    start..start,
                    format!("bad environment variable name `{key}` in task `{name}`: expected letters, digits and `_`"),
                );
            }
        }
        let env = self.env(raw.env, &format!("task `{name}`"));
        if self.problems.len() > before {
            return None;
        }
        Some(Task {
            name,
            kind: kind?,
            action: raw.action,
            retries,
            retry_delay,
            backoff,
            timeout,
            fallback: raw.fallback.into_iter().map(Spanned::into_inner).collect(),
            when: raw.when.map(Spanned::into_inner),
            depends_on: raw.depends_on.into_iter().map(Spanned::into_inner).collect(),
            continue_on_failure: raw.continue_on_failure,
            env,
            max_output_size,
            max_log_size,
            line,
        })
    }

    fn task_kind(&mut self, raw: &RawTask, name: &str, span: Range<usize>, registry: &Registry) -> Option<TaskKind> {
        let given: Vec<(&str, Range<usize>)> = [
            raw.service.as_ref().map(|v| ("service", v.span())),
            raw.agent.as_ref().map(|v| ("agent", v.span())),
            raw.layer.as_ref().map(|v| ("layer", v.span())),
            raw.run.as_ref().map(|v| ("run", v.span())),
            raw.command.as_ref().map(|v| ("command", v.span())),
        ]
        .into_iter()
        .flatten()
        .collect();
        match given.as_slice() {
            [] => {
                self.at(span, format!("task `{name}` has no kind: expected one of {TASK_KINDS}"));
                return None;
            }
            [_] => {}
            [_, (_, second), ..] => {
                let keys: Vec<String> = given.iter().map(|(key, _)| format!("`{key}`")).collect();
                self.at(
                    second.clone(),
                    format!(
                        "task `{name}` has several kinds ({}): expected exactly one of {TASK_KINDS}",
                        keys.join(", ")
                    ),
                );
                return None;
            }
        }
        if let Some(service) = &raw.service {
            return self
                .reference(service, "service", &registry.services)
                .then(|| TaskKind::Service(service.get_ref().clone()));
        }
        if let Some(agent) = &raw.agent {
            return self.reference(agent, "agent", &registry.agents).then(|| TaskKind::Agent(agent.get_ref().clone()));
        }
        if let Some(layer) = &raw.layer {
            return self.reference(layer, "layer", &registry.layers).then(|| TaskKind::Layer(layer.get_ref().clone()));
        }
        if let Some(run) = &raw.run {
            if run.get_ref().trim().is_empty() {
                self.at(run.span(), format!("task `{name}` has an empty `run`: expected a shell command line"));
                return None;
            }
            return Some(TaskKind::Run(run.get_ref().clone()));
        }
        let command = raw.command.as_ref()?;
        if command.get_ref().is_empty() {
            self.at(
                command.span(),
                format!("task `{name}` has an empty `command`: expected a program and its arguments"),
            );
            return None;
        }
        Some(TaskKind::Command(command.get_ref().clone()))
    }

    fn reference<T>(&mut self, name: &Spanned<String>, kind: &str, known_entries: &BTreeMap<String, T>) -> bool {
        if known_entries.contains_key(name.get_ref()) {
            return true;
        }
        self.at(
            name.span(),
            format!(
                "unknown {kind} `{}`: expected a {kind} defined in conveyor.toml{}",
                name.get_ref(),
                known(known_entries.keys(), known_entries.len())
            ),
        );
        false
    }
}

fn known<'a>(names: impl Iterator<Item = &'a String>, total: usize) -> String {
    if total == 0 { String::from(" (it defines none)") } else { format!(" (known: {})", listed(names, total)) }
}

/// Names joined with commas, the first few only: a message per unknown name that listed all of thousands
/// would make reporting quadratic.
fn listed<'a>(names: impl Iterator<Item = &'a String>, total: usize) -> String {
    let shown: Vec<&str> = names.take(NAMES_SHOWN).map(String::as_str).collect();
    if total > NAMES_SHOWN { format!("{}, … ({total} in all)", shown.join(", ")) } else { shown.join(", ") }
}

/// `10s`, `5m`, `1h30m`, `250ms`, `2d`; a bare number, an unknown unit or more than 100 years is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let hint = "expected a number and a unit such as `10s`, `5m`, `1h30m` or `250ms`";
    if trimmed.is_empty() {
        return Err(format!("`{text}` is empty; {hint}"));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("`{text}` has no unit; {hint}"));
    }
    let duration = humantime::parse_duration(trimmed).map_err(|error| format!("`{text}`: {error}; {hint}"))?;
    if duration > MAX_DURATION {
        return Err(format!("`{text}` is more than 100 years; expected at most `100y` (36525 days)"));
    }
    Ok(duration)
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn scalar_type(value: &toml::Value) -> Option<ParamType> {
    match value {
        toml::Value::String(_) => Some(ParamType::String),
        toml::Value::Integer(_) => Some(ParamType::Integer),
        toml::Value::Float(_) => Some(ParamType::Float),
        toml::Value::Boolean(_) => Some(ParamType::Boolean),
        _ => None,
    }
}

fn to_json(value: toml::Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// A parameter value in its declared type; integers are accepted where floats are expected.
pub fn coerce(value: &toml::Value, kind: ParamType) -> Option<serde_json::Value> {
    match (kind, value) {
        (ParamType::String, toml::Value::String(text)) => Some(serde_json::Value::from(text.clone())),
        (ParamType::Integer, toml::Value::Integer(number)) => Some(serde_json::Value::from(*number)),
        (ParamType::Float, toml::Value::Float(number)) => Some(serde_json::Value::from(*number)),
        (ParamType::Float, toml::Value::Integer(number)) => Some(serde_json::Value::from(*number as f64)),
        (ParamType::Boolean, toml::Value::Boolean(flag)) => Some(serde_json::Value::from(*flag)),
        _ => None,
    }
}

/// The first cycle among `depends_on` edges, as a path of task names that ends where it starts. A depth-first
/// search with its own stack: a chain of ten thousand tasks must not overflow the thread's.
fn find_cycle<'a>(tasks: impl Iterator<Item = &'a Task>) -> Option<Vec<String>> {
    let edges: BTreeMap<&str, Vec<&str>> =
        tasks.map(|task| (task.name.as_str(), task.depends_on.iter().map(String::as_str).collect())).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for &start in edges.keys() {
        if marks.contains_key(start) {
            continue;
        }
        // The path being explored, each node with the index of the next edge to follow from it.
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::Visiting);
        while let Some((node, next)) = path.last_mut() {
            let Some(&target) = edges.get(*node).and_then(|targets| targets.get(*next)) else {
                marks.insert(*node, Mark::Done);
                path.pop();
                continue;
            };
            *next += 1;
            match marks.get(target) {
                Some(Mark::Done) => {}
                Some(Mark::Visiting) => {
                    let from = path.iter().position(|(n, _)| *n == target).expect("a visiting node is on the path");
                    let mut cycle: Vec<String> = path[from..].iter().map(|(n, _)| n.to_string()).collect();
                    cycle.push(target.to_string());
                    return Some(cycle);
                }
                None => {
                    marks.insert(target, Mark::Visiting);
                    path.push((target, 0));
                }
            }
        }
    }
    None
}
