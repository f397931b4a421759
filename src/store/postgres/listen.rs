//! Wake-ups: a connection of its own that LISTENs on a channel and tells its reader when something was
//! notified there, so a command queued from another shell is taken at once rather than at the next poll.
//! Notifications are hints: one can be lost (a connection killed between a NOTIFY and its delivery), so the
//! reader keeps polling as a backstop, and every (re)connection wakes it once, for a full look.

use std::future::poll_fn;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Config, NoTls};

/// Between attempts to connect again after the connection was lost.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Starts listening on `channel`; the receiver gets `()` after each notification (several close together
/// may come as one) and after each (re)connection. The thread ends once the receiver is dropped.
pub(super) fn listen(config: Config, target: String, channel: &'static str) -> std::io::Result<mpsc::Receiver<()>> {
    let (wake, woken) = mpsc::channel(1);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    std::thread::Builder::new().name("store-listen".into()).spawn(move || {
        let _logging = tracing::dispatcher::set_default(&dispatch);
        runtime.block_on(keep_listening(config, target, channel, wake));
    })?;
    Ok(woken)
}

async fn keep_listening(config: Config, target: String, channel: &'static str, wake: mpsc::Sender<()>) {
    let mut told_lost = false;
    while !wake.is_closed() {
        match listen_once(&config, channel, &wake).await {
            Ok(()) => return,
            Err(why) if !told_lost => {
                tracing::warn!("listening for wake-ups at {target} stopped ({why}); polling until it is back");
                told_lost = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// One connection's life: `Ok` when the reader is gone, `Err` with why when the connection is.
async fn listen_once(config: &Config, channel: &'static str, wake: &mpsc::Sender<()>) -> Result<(), String> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|error| super::connection::words(&error))?;
    let (notified, mut notifications) = mpsc::unbounded_channel::<Result<(), String>>();
    let driver = tokio::spawn(async move {
        loop {
            match poll_fn(|context| connection.poll_message(context)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    let _ = notified.send(Ok(()));
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    let _ = notified.send(Err(super::connection::words(&error)));
                    return;
                }
                None => {
                    let _ = notified.send(Err("the server closed the connection".into()));
                    return;
                }
            }
        }
    });
    let listening = client.batch_execute(&format!("LISTEN {channel}")).await;
    if let Err(error) = listening {
        driver.abort();
        return Err(super::connection::words(&error));
    }
    // Whatever was notified while no connection listened is found by one full look.
    let _ = wake.try_send(());
    let outcome = loop {
        tokio::select! {
            message = notifications.recv() => match message {
                Some(Ok(())) => {
                    let _ = wake.try_send(());
                }
                Some(Err(why)) => break Err(why),
                None => break Err("the connection's task ended".into()),
            },
            () = wake.closed() => break Ok(()),
        }
    };
    driver.abort();
    outcome
}
