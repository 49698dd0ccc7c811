//! A stand-in model for the gateway's agent runs: an OpenAI-compatible
//! `POST /v1/chat/completions` (streamed, server-sent events) on loopback
//! that answers a user's turn with one `exec` tool call and the tool's
//! result with a final text. It lets the real gateway drive its own exec
//! pipeline (`exec` tool → `system.run.prepare` → `system.run` on a node)
//! without a real model.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// The stub server; it runs until the test process ends.
pub struct StubModel {
    port: u16,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl StubModel {
    /// Starts a stub whose tool call runs `command` (the `exec` tool's
    /// `command` argument, shell text).
    pub fn start(command: &str) -> StubModel {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stub model");
        let port = listener.local_addr().expect("stub address").port();
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (s, command) = (seen.clone(), command.to_owned());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, command) = (s.clone(), command.clone());
                std::thread::spawn(move || serve(conn, &command, &s));
            }
        });
        StubModel { port, seen }
    }

    /// The base URL the gateway's provider config points at.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The gateway config that makes the stub the default model and sends
    /// `exec` to the node named `node` with the gateway's policy at `full`
    /// (the node's own policy still applies).
    pub fn gateway_config(&self, node: &str) -> Value {
        json!({
            "models": {"mode": "merge", "providers": {"stub": {
                "baseUrl": self.base_url(), "apiKey": "stub", "api": "openai-completions",
                "models": [{"id": "stub-model", "name": "Stub", "reasoning": false,
                            "input": ["text"],
                            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128000, "maxTokens": 4096}]}}},
            "agents": {"defaults": {"model": {"primary": "stub/stub-model"}}},
            "tools": {"exec": {"host": "node", "security": "full", "ask": "off", "node": node,
                               "timeoutSec": 60}},
        })
    }

    /// The tool results the gateway sent back to the model, in order.
    pub fn tool_results(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(last_tool_result)
            .collect()
    }

    /// How many completions were asked for.
    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The content of the tool result that answers the turn's user message,
/// if the turn got that far.
fn last_tool_result(request: &Value) -> Option<String> {
    let messages = request["messages"].as_array()?;
    // The gateway appends its own context as a user message after a tool
    // result; the turn's message is the last one that is not that.
    let user = messages.iter().rposition(|m| {
        m["role"] == "user"
            && !content_text(&m["content"]).starts_with("<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>")
    })?;
    messages[user..]
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .map(|m| content_text(&m["content"]))
}

fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        other => other.to_string(),
    }
}

fn serve(conn: TcpStream, command: &str, seen: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(conn);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut conn = reader.into_inner();
    if head.starts_with("GET") {
        let models = json!({"object": "list", "data": [{"id": "stub-model", "object": "model"}]});
        let text = models.to_string();
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        return;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let tool_result = last_tool_result(&request);
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(request.clone());
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "stub-1", "object": "chat.completion.chunk", "created": 0,
               "model": "stub-model",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let chunks = if let Some(result) = tool_result {
        vec![
            chunk(
                json!({"role": "assistant", "content": format!("done: {result}")}),
                Value::Null,
            ),
            chunk(json!({}), "stop".into()),
        ]
    } else {
        let args = json!({"command": command}).to_string();
        vec![
            chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                    "id": "call_1", "type": "function",
                    "function": {"name": "exec", "arguments": args}}]}),
                Value::Null,
            ),
            chunk(json!({}), "tool_calls".into()),
        ]
    };
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    );
    for c in chunks {
        out.push_str(&format!("data: {c}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    let _ = conn.write_all(out.as_bytes());
}
