//! A run's output on its way out: streamed as `node.invoke.progress` while
//! it runs, and its tail in `exec.finished`.

use serde_json::Value;

use super::EVENT_TAIL;
use crate::exec::run::OutputTap;
use clawnode::Progress;

/// The last `EVENT_TAIL` characters of the run's output, as upstream cuts
/// it for `exec.finished`.
pub(super) fn output_tail(payload: &Value) -> String {
    let parts: Vec<&str> = ["stdout", "stderr", "error"]
        .iter()
        .filter_map(|k| payload[k].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    let all = parts.join("\n");
    let trimmed = all.trim();
    let count = trimmed.chars().count();
    if count <= EVENT_TAIL {
        return trimmed.to_owned();
    }
    let tail: String = trimmed.chars().skip(count - EVENT_TAIL).collect();
    format!("... (truncated) {tail}")
}

/// Streams the kept output as `node.invoke.progress` while the run goes
/// on, as the official host streams its long-running commands; the answer
/// still carries the whole kept output. Bytes are sent as text once they
/// form whole UTF-8 characters (a character split across reads waits for
/// its rest).
pub(super) fn stream_output(progress: Progress) -> OutputTap {
    let carry: std::sync::Mutex<[Vec<u8>; 2]> = std::sync::Mutex::default();
    OutputTap(std::sync::Arc::new(move |stream, bytes| {
        let mut carry = carry.lock().unwrap_or_else(|e| e.into_inner());
        let pending = &mut carry[stream.min(1)];
        pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(pending) {
            Ok(s) => s.len(),
            // An incomplete character at the end waits; anything else is
            // sent lossily now.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => pending.len(),
        };
        if valid > 0 {
            let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
            pending.drain(..valid);
            progress.send(text);
        }
    }))
}
