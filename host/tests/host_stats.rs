//! `node.host.stats` through the driver, against the fake gateway of the
//! adapter's tests.

use clawnode::__testutil::*;
use clawnode::{NodeBuilder, StateDir};
use clawnode_host::HostCommands as _;

#[test]
fn host_stats_go_out_right_after_each_admission() {
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().unwrap();
    let mut builder =
        NodeBuilder::new(node_config(&gw.url()), StateDir::new(dir.path())).with_host_stats();
    let events = builder.events();
    let node = builder.spawn().unwrap();
    smol::block_on(async {
        let mut ws = accept_connected(&gw, &events).await;
        let req = recv(&mut ws).await.unwrap();
        assert_eq!(req["method"], "node.event");
        assert_eq!(req["params"]["event"], "node.host.stats");
        let payload: serde_json::Value =
            serde_json::from_str(req["params"]["payloadJSON"].as_str().unwrap()).unwrap();
        assert!(payload["cpuCount"].as_u64().unwrap() >= 1, "{payload}");
        assert!(
            payload["memoryFreeBytes"].as_u64() <= payload["memoryTotalBytes"].as_u64(),
            "{payload}"
        );
        smol::future::zip(node.shutdown(), drain_until_closed(&mut ws)).await;
    });
}
