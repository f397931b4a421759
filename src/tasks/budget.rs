//! Work over user-supplied expressions (CEL in `when`, rules and approvals) runs off the engine's loop, a
//! few at a time, and is given up on past its time budget: the task fails with a clear error while the
//! engine keeps answering. A thread cannot be stopped from outside, so one that overruns finishes (or not)
//! on its own; validation's limits on expressions keep that rare, and the semaphore keeps it from piling up.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::Semaphore;

/// How long a `when` condition may take.
pub const WHEN_BUDGET: Duration = Duration::from_secs(2);
/// How long a governance layer may take to judge all its items.
pub const LAYER_BUDGET: Duration = Duration::from_secs(30);

/// Evaluations at once, across the engine: a runaway expression holds one, never the engine.
static EVALUATIONS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(2));

/// Runs `work` on a blocking thread and waits at most `budget` (queueing included) for its answer.
pub async fn run_bounded<T: Send + 'static>(
    what: &str,
    budget: Duration,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let bounded = async {
        let _turn = EVALUATIONS.acquire().await.map_err(|_| "the engine is stopping".to_string())?;
        tokio::task::spawn_blocking(work).await.map_err(|error| format!("{what} failed: {error}"))?
    };
    match tokio::time::timeout(budget, bounded).await {
        Ok(result) => result,
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
