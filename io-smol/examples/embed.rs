//! Embeds an OpenClaw node in a program: one custom command, an event
//! sent on every connect, and a graceful stop on
//! Ctrl-C.
//!
//! ```sh
//! OPENCLAW_GATEWAY_TOKEN=T cargo run -p clawnode --example embed -- \
//!     wss://127.0.0.1:18789 sha256:<pin printed by `clawnode probe`>
//! ```
//!
//! With a `ws://` loopback URL no pin is needed.

use std::path::PathBuf;

use async_signal::{Signal, Signals};
use clawnode::policy::{Credentials, Secret, SessionConfig, TlsPolicy};
use clawnode::{CommandError, Event, NodeBuilder, StateDir};
use serde_json::json;
use smol::future::FutureExt as _;
use smol::stream::StreamExt as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: embed GATEWAY_URL [PIN] (token from OPENCLAW_GATEWAY_TOKEN)")?;
    let tls = match args.next() {
        Some(pin) => TlsPolicy::pinned([pin])?,
        None => TlsPolicy::SystemTrust,
    };
    let credentials = Credentials {
        token: std::env::var("OPENCLAW_GATEWAY_TOKEN")
            .ok()
            .map(Secret::new),
        ..Credentials::default()
    };
    let config = SessionConfig::parse(&url, tls)?.with_credentials(credentials);
    // A state directory of its own, so the example never touches the
    // identity of a `clawnode` installed on the same machine.
    let state = StateDir::new(PathBuf::from(".clawnode-example-state"));

    let mut builder = NodeBuilder::new(config, state).command("demo.echo", |inv| async move {
        if inv.params.is_null() {
            return Err(CommandError::new(
                "INVALID_PARAMS",
                "demo.echo needs params",
            ));
        }
        Ok(json!({ "echo": inv.params }))
    });
    let events = builder.events();
    let node = builder.spawn()?;
    println!("device id: {}", node.device_id());

    let mut signals = Signals::new([Signal::Int, Signal::Term])?;
    smol::block_on(async {
        loop {
            let next = async { events.recv().await.ok() }
                .or(async {
                    signals.next().await;
                    None
                })
                .await;
            let Some(event) = next else { break };
            println!("{event}");
            if let Event::Connected { .. } = event {
                match node
                    .send_event("demo.hello", Some(json!({"from": "embed"})))
                    .await
                {
                    Ok(answer) => println!("gateway took demo.hello: {answer}"),
                    Err(e) => println!("demo.hello not sent: {e}"),
                }
            }
        }
        println!("status before stopping: {:?}", node.status().session.phase);
        node.shutdown().await;
    });
    Ok(())
}
