//! Alert sinks from the registry's `[alerts]`: a command (the message as its last argument, the alert as
//! JSON on stdin) and a webhook (the alert as a JSON POST). Both are fire-and-forget with a short timeout:
//! a broken sink must never hold up the engine.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::definition::Alerts;
use crate::store::AlertRecord;

const SINK_TIMEOUT: Duration = Duration::from_secs(10);

pub fn notify(sinks: &Alerts, alert: &AlertRecord, workdir: &Path) {
    let body = serde_json::to_vec(alert).expect("alerts serialise");
    if let Some(argv) = sinks.command.clone().filter(|argv| !argv.is_empty()) {
        let message = alert.message.clone();
        let body = body.clone();
        let workdir = workdir.to_path_buf();
        tokio::spawn(async move {
            let mut command = tokio::process::Command::new(&argv[0]);
            command
                .args(&argv[1..])
                .arg(&message)
                .current_dir(workdir)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            match crate::tasks::reclaim::spawn_tracked(&mut command, None) {
                Ok(mut child) => {
                    let pid = child.id();
                    if let Some(mut stdin) = child.stdin.take() {
                        let _ = stdin.write_all(&body).await;
                    }
                    if tokio::time::timeout(SINK_TIMEOUT, child.wait()).await.is_err() {
                        tracing::warn!("the alert command `{}` took over {SINK_TIMEOUT:?}: killed", argv[0]);
                        let _ = child.kill().await;
                    }
                    if let Some(pid) = pid {
                        crate::tasks::reclaim::untrack(pid);
                    }
                }
                Err(error) => tracing::warn!("the alert command `{}` could not start: {error}", argv[0]),
            }
        });
    }
    if let Some(url) = sinks.webhook.clone() {
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(SINK_TIMEOUT)).build().into();
            if let Err(error) = agent.post(&url).header("Content-Type", "application/json").send(&body[..]) {
                tracing::warn!("the alert webhook {url} failed: {error}");
            }
        });
    }
}
