//! Work over user-supplied expressions (CEL in `when`, rules and approvals) runs off the engine's loop, a
//! few at a time, and is given up on past its time budget: the task fails with a clear error while the
//! engine keeps answering. A thread cannot be stopped from outside, so one that overruns finishes (or not)
//! on its own, holding its place; validation's limits on expressions keep that rare.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::Semaphore;

/// How long a `when` condition may take.
pub const WHEN_BUDGET: Duration = Duration::from_secs(2);
/// How long a governance layer may take to judge all its items.
pub const LAYER_BUDGET: Duration = Duration::from_secs(30);

/// Evaluations at once, across the engine. A thread past its budget keeps its permit until it really ends,
/// so runaway expressions can hold these, never more threads than this.
static EVALUATIONS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(2)));

/// Runs `work` on a blocking thread and waits at most `budget` for its answer — and as long again, at most,
/// for room to start it.
pub async fn run_bounded<T: Send + 'static>(
    what: &str,
    budget: Duration,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let permit = match tokio::time::timeout(budget, EVALUATIONS.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => return Err("the engine is stopping".into()),
        Err(_) => {
            return Err(format!(
                "{what} could not start within {}: earlier expressions are still running past their budgets",
                humantime::format_duration(budget)
            ));
        }
    };
    let running = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    });
    match tokio::time::timeout(budget, running).await {
        Ok(result) => result.map_err(|error| format!("{what} failed: {error}"))?,
        Err(_) => Err(format!(
            "{what} took longer than its budget of {}: stopped waiting for it (simplify the expression or the data it runs over)",
            humantime::format_duration(budget)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_past_its_budget_is_an_error_and_the_caller_goes_on() {
        let slow = run_bounded("`when`", Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_millis(500));
            Ok(true)
        });
        assert_eq!(
            slow.await.unwrap_err(),
            "`when` took longer than its budget of 50ms: stopped waiting for it (simplify the expression or the data it runs over)"
        );
        assert_eq!(run_bounded("`when`", Duration::from_secs(5), || Ok(7)).await, Ok(7));
    }
}
