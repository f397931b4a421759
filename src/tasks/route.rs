//! Which executor runs an attempt on a route: an inline command, an executor the embedding program supplied,
//! a registered service or agent (process, HTTP endpoint or language model), or a governance layer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{GovernanceExecutor, HttpExecutor, LlmExecutor, ProcessExecutor, Refusal, SharedExecutor};
use crate::definition::{Registry, Target, Task, TaskKind};

/// The route of a task that carries its own `run` line or `command`.
pub const INLINE_ROUTE: &str = "inline";

/// What routes can lead to.
pub struct Routes<'a> {
    pub registry: &'a Registry,
    /// In-process executors by route name; they take precedence over the registry's entry of that name.
    pub embedded: &'a BTreeMap<String, SharedExecutor>,
    /// The permits an LLM agent's requests share across its attempts, by the agent's name and its
    /// `max_concurrency` (the engine keeps them, so a reload with the same bound keeps the same permits).
    pub llm_permits: &'a dyn Fn(&str, usize) -> Arc<Semaphore>,
    /// On a store several engines share: processes are offered to every engine serving their route rather
    /// than started here.
    pub offering: Option<&'a dyn Offering>,
}

/// Turns a process route into one whose attempts any engine sharing the store may claim and run.
pub trait Offering: Send + Sync {
    fn offered(&self, route: &str, process: ProcessExecutor) -> SharedExecutor;
}

/// The kind of executor a route leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Process,
    /// A process offered to the engines sharing the store (`Offering`): its secrets are read, and its
    /// engine-wide bound applied, where it runs.
    Offered,
    Http,
    Llm,
    Governance,
    /// Supplied by the program that embeds the engine.
    Embedded,
    /// The route cannot run: every attempt fails with the reason.
    Refused,
}

/// The executor for a route, with the route's own timeout and environment.
pub struct Route {
    pub executor: SharedExecutor,
    pub kind: Kind,
    pub timeout: Option<Duration>,
    pub env: BTreeMap<String, String>,
}

impl Route {
    fn plain(executor: SharedExecutor, kind: Kind) -> Route {
        Route { executor, kind, timeout: None, env: BTreeMap::new() }
    }
}

/// Which executor `route` runs on for `task`.
pub fn executor_for(route: &str, task: &Task, routes: &Routes) -> Route {
    let process = |process: ProcessExecutor| -> (SharedExecutor, Kind) {
        match routes.offering {
            Some(offering) => (offering.offered(route, process), Kind::Offered),
            None => (Arc::new(process), Kind::Process),
        }
    };
    if route == INLINE_ROUTE {
        let (executor, kind) = match &task.kind {
            TaskKind::Run(line) => process(ProcessExecutor::shell(line)),
            TaskKind::Command(argv) => process(ProcessExecutor { argv: argv.clone(), append_action: false }),
            _ => (
                Arc::new(Refusal(format!("task {} has no inline command", task.name))) as SharedExecutor,
                Kind::Refused,
            ),
        };
        return Route::plain(executor, kind);
    }
    if let Some(executor) = routes.embedded.get(route) {
        return Route::plain(executor.clone(), Kind::Embedded);
    }
    let registry = routes.registry;
    let endpoint = registry.services.get(route).or_else(|| registry.agents.get(route));
    if let Some(endpoint) = endpoint {
        let (executor, kind): (SharedExecutor, Kind) = match &endpoint.target {
            Target::Command(argv) => process(ProcessExecutor { argv: argv.clone(), append_action: true }),
            Target::Url(url) => (Arc::new(HttpExecutor { url: url.clone() }), Kind::Http),
            Target::Llm(agent) => {
                let permits = (routes.llm_permits)(route, agent.max_concurrency);
                (Arc::new(LlmExecutor { agent: agent.clone(), permits }), Kind::Llm)
            }
        };
        return Route { executor, kind, timeout: endpoint.timeout, env: endpoint.env.clone() };
    }
    if let Some(layer) = registry.layers.get(route) {
        let executor = GovernanceExecutor { name: route.to_string(), layer: layer.clone() };
        return Route::plain(Arc::new(executor), Kind::Governance);
    }
    let refusal = Refusal(format!("no service or agent named {route} is registered"));
    Route::plain(Arc::new(refusal), Kind::Refused)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::definition::{Endpoint, Layer, LlmAgent};
    use crate::tasks::{Attempt, Ending, Execution, Executor, LogSink};

    fn task(kind: TaskKind) -> Task {
        Task {
            name: "T".into(),
            kind,
            action: None,
            retries: 0,
            retry_delay: Duration::ZERO,
            backoff: 1.0,
            timeout: None,
            fallback: Vec::new(),
            when: None,
            depends_on: Vec::new(),
            continue_on_failure: false,
            env: BTreeMap::new(),
            max_output_size: None,
            max_log_size: None,
            line: 1,
        }
    }

    fn endpoint(target: Target, timeout: Option<Duration>) -> Endpoint {
        let env = BTreeMap::from([("REGION".to_string(), "eu".to_string())]);
        Endpoint { description: None, target, env, timeout, max_concurrency: None }
    }

    fn registry() -> Registry {
        let mut registry = Registry::default();
        let tool = Target::Command(vec!["./tool".into()]);
        registry.services.insert("Tool".into(), endpoint(tool, Some(Duration::from_secs(9))));
        registry.services.insert("Api".into(), endpoint(Target::Url("http://api.local".into()), None));
        let agent = LlmAgent {
            url: "http://llm.local/v1".into(),
            model: "m".into(),
            api_key_env: None,
            prompt: "Score it.".into(),
            items: None,
            output_schema: None,
            max_concurrency: 3,
            temperature: None,
        };
        registry.agents.insert("Scorer".into(), endpoint(Target::Llm(Arc::new(agent)), None));
        let layer = Layer {
            description: None,
            items: None,
            rules: Vec::new(),
            approval: None,
            show: Vec::new(),
            approval_timeout: None,
            on_timeout: Default::default(),
        };
        registry.layers.insert("Review".into(), layer);
        registry
    }

    struct Embedded;

    impl Executor for Embedded {
        fn execute(&self, _attempt: Attempt) -> Execution {
            Box::pin(async { Ending::Cancelled })
        }
    }

    /// Chooses with an empty set of embedded executors, noting which LLM permits were asked for.
    fn choose(route: &str, kind: TaskKind, embedded: &BTreeMap<String, SharedExecutor>) -> (Route, Vec<String>) {
        let asked = Mutex::new(Vec::new());
        let permits = |agent: &str, bound: usize| {
            asked.lock().unwrap().push(format!("{agent}:{bound}"));
            Arc::new(Semaphore::new(bound))
        };
        let registry = registry();
        let routes = Routes { registry: &registry, embedded, llm_permits: &permits, offering: None };
        let chosen = executor_for(route, &task(kind), &routes);
        (chosen, asked.into_inner().unwrap())
    }

    /// What a refusal says when it runs.
    fn refusal_of(route: Route) -> String {
        assert_eq!(route.kind, Kind::Refused);
        let (_handle, cancel) = crate::tasks::cancel_pair();
        let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
        let attempt = Attempt {
            run_id: "r".into(),
            workflow: "w".into(),
            task: "T".into(),
            action: None,
            number: 1,
            input: serde_json::Value::Null,
            params: Default::default(),
            env: BTreeMap::new(),
            workdir: ".".into(),
            output_file: "out.json".into(),
            log: LogSink::detached(Arc::new(|_, _: &str, _| {})),
            stop: crate::tasks::Stop::new(cancel, None, clock),
            kill_grace: Duration::ZERO,
            state_id: "s".into(),
            scheduled_at: None,
            spawned: None,
            limits: Default::default(),
            usage: None,
        };
        let ending = block_on(route.executor.execute(attempt));
        match ending {
            Ending::Failed { error, .. } => error,
            other => panic!("a refusal ended {other:?}"),
        }
    }

    fn block_on(execution: Execution) -> Ending {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(execution)
    }

    #[test]
    fn an_inline_run_line_or_command_runs_as_a_process_without_a_route_timeout_or_env() {
        let none = BTreeMap::new();
        for kind in [TaskKind::Run("echo hi".into()), TaskKind::Command(vec!["echo".into(), "hi".into()])] {
            let (route, _) = choose(INLINE_ROUTE, kind, &none);
            assert_eq!((route.kind, route.timeout, route.env.len()), (Kind::Process, None, 0));
        }
    }

    #[test]
    fn an_inline_route_for_a_task_without_a_command_is_refused() {
        let (route, _) = choose(INLINE_ROUTE, TaskKind::Service("Api".into()), &BTreeMap::new());
        assert_eq!(refusal_of(route), "task T has no inline command");
    }

    #[test]
    fn a_registered_command_runs_as_a_process_with_the_services_timeout_and_env() {
        let (route, _) = choose("Tool", TaskKind::Service("Tool".into()), &BTreeMap::new());
        assert_eq!((route.kind, route.timeout), (Kind::Process, Some(Duration::from_secs(9))));
        assert_eq!(route.env.get("REGION").map(String::as_str), Some("eu"));
    }

    #[test]
    fn a_registered_url_is_called_over_http() {
        let (route, asked) = choose("Api", TaskKind::Service("Api".into()), &BTreeMap::new());
        assert_eq!((route.kind, route.timeout), (Kind::Http, None));
        assert_eq!(route.executor.default_timeout(), Some(super::super::http::DEFAULT_HTTP_TIMEOUT));
        assert!(asked.is_empty(), "an HTTP service takes no LLM permits");
    }

    #[test]
    fn an_llm_agent_asks_for_the_permits_of_its_name_and_bound() {
        let (route, asked) = choose("Scorer", TaskKind::Agent("Scorer".into()), &BTreeMap::new());
        assert_eq!(route.kind, Kind::Llm);
        assert_eq!(asked, vec!["Scorer:3"]);
    }

    #[test]
    fn a_layer_is_judged_by_the_governance_executor() {
        let (route, _) = choose("Review", TaskKind::Layer("Review".into()), &BTreeMap::new());
        assert_eq!((route.kind, route.timeout), (Kind::Governance, None));
    }

    #[test]
    fn an_embedded_executor_wins_over_the_registrys_entry_of_the_same_name() {
        let embedded = BTreeMap::from([("Api".to_string(), Arc::new(Embedded) as SharedExecutor)]);
        let (route, _) = choose("Api", TaskKind::Service("Api".into()), &embedded);
        assert_eq!((route.kind, route.timeout, route.env.len()), (Kind::Embedded, None, 0));
    }

    #[test]
    fn an_unknown_route_is_refused_with_its_name() {
        let (route, _) = choose("Nowhere", TaskKind::Service("Nowhere".into()), &BTreeMap::new());
        assert_eq!(refusal_of(route), "no service or agent named Nowhere is registered");
    }
}
