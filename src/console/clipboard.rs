//! `y`: what the selection copies, and the OSC 52 sequence that puts it on the terminal's clipboard — the
//! terminal does the copying, so it works over SSH and inside tmux where no local clipboard tool would.

use super::model::{Effect, Model, Pane};

/// The text `y` copies where the focus is, and the status line that says what it was.
pub fn copy(model: &mut Model) -> Vec<Effect> {
    match selection(model) {
        Ok((text, what)) => {
            model.set_status(format!("copied {what}"));
            vec![Effect::Copy(text)]
        }
        Err(why) => {
            model.set_status(why);
            Vec::new()
        }
    }
}

/// What is selected in the focused pane, and how the status line names it.
fn selection(model: &Model) -> Result<(String, String), String> {
    match model.focus {
        Pane::Workflows => {
            let workflow = model.selected_workflow().ok_or("no workflow selected")?;
            Ok((workflow.id.clone(), format!("workflow {}", workflow.id)))
        }
        Pane::Runs => {
            let run = model.selected_run().ok_or("no run selected")?;
            Ok((run.id.clone(), format!("run {}", run.id)))
        }
        Pane::Tasks => {
            let (run, task) = model.selected_run().zip(model.selected_task()).ok_or("no task selected")?;
            let text = format!("{} {}", run.id, task.name);
            Ok((text.clone(), format!("task {text}")))
        }
        Pane::Monitor => {
            let alert = model.alerts.get(model.cursor.alert).filter(|_| model.monitor_alerts);
            let alert = alert.ok_or("select an alert to copy (v shows the alerts)")?;
            Ok((alert.message.clone(), format!("alert {}", alert.id)))
        }
        Pane::Log => {
            let log = model.log.as_ref().ok_or("no log open")?;
            // The line a search or an error jump landed on, else the first line on screen.
            let line = log.mark.unwrap_or(log.top);
            let text = line
                .checked_sub(log.window_top)
                .and_then(|at| log.window.get(at))
                .ok_or("that line is still being read: try again")?;
            Ok((super::logview::printable(text), format!("log line {}", line + 1)))
        }
    }
}

/// The OSC 52 sequence that sets the clipboard to `text`; inside tmux wrapped in the passthrough tmux asks for
/// (every ESC inside doubled), since tmux would otherwise keep the sequence to itself.
pub fn osc52(text: &str, tmux: bool) -> String {
    let sequence = format!("\x1b]52;c;{}\x07", base64(text.as_bytes()));
    if tmux { format!("\x1bPtmux;{}\x1b\\", sequence.replace('\x1b', "\x1b\x1b")) } else { sequence }
}

/// Standard base64 with padding (RFC 4648), as OSC 52 wants it.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, byte)| n | (*byte as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        let cases =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64("foobar".as_bytes()), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn osc52_sets_the_clipboard_plainly_and_through_tmux() {
        assert_eq!(osc52("r-1", false), "\x1b]52;c;ci0x\x07");
        assert_eq!(osc52("r-1", true), "\x1bPtmux;\x1b\x1b]52;c;ci0x\x07\x1b\\");
    }
}
