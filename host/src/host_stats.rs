//! `node.host.stats`: the host's CPUs, load, memory and disk, as the
//! official node host reports them to the gateway right after each
//! admission and then every 60 s (docs/exec-host.md §6.5).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// The event's name.
pub const HOST_STATS: &str = "node.host.stats";
/// How often it is sent while connected.
pub const HOST_STATS_EVERY: Duration = Duration::from_secs(60);

/// The `MemTotal` and `MemAvailable` of `/proc/meminfo` text, in bytes.
fn memory(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
            kib.checked_mul(1024)
        })
    };
    let total = field("MemTotal")?;
    Some((total, field("MemAvailable").unwrap_or(0).min(total)))
}

/// The 1, 5 and 15 minute load averages of `/proc/loadavg` text, kept
/// within what the gateway accepts.
fn load(loadavg: &str) -> Option<[f64; 3]> {
    let mut it = loadavg.split_whitespace().map(|v| v.parse::<f64>().ok());
    let mut out = [0.0; 3];
    for slot in &mut out {
        let v = it.next()??;
        *slot = if v.is_finite() {
            v.clamp(0.0, 100_000.0)
        } else {
            0.0
        };
    }
    Some(out)
}

/// The payload now, with the disk of `home` (the official host's choice).
/// Fields that cannot be read are left out, as upstream leaves them.
pub fn sample(home: &Path) -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(4096));
    let mut v = json!({ "cpuCount": cpus });
    if let Some(l) = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .as_deref()
        .and_then(load)
        && l.iter().any(|x| *x != 0.0)
    {
        v["loadAverage"] = json!(l);
    }
    let (total, free) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(memory)
        .unwrap_or((0, 0));
    v["memoryTotalBytes"] = total.into();
    v["memoryFreeBytes"] = free.into();
    if let Ok(fs) = rustix::fs::statvfs(home) {
        let block = fs.f_frsize.max(1);
        let total = fs.f_blocks.saturating_mul(block);
        v["diskTotalBytes"] = total.into();
        v["diskAvailableBytes"] = fs.f_bavail.saturating_mul(block).min(total).into();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_as_the_gateway_expects() {
        let meminfo = "MemTotal:        8000 kB\nMemFree:  100 kB\nMemAvailable:    9000 kB\n";
        assert_eq!(
            memory(meminfo),
            Some((8_192_000, 8_192_000)),
            "free never above total"
        );
        assert_eq!(memory("MemTotal: 4 kB\n"), Some((4096, 0)));
        assert_eq!(memory("nothing"), None);
        assert_eq!(
            load("0.50 0.40 1e9 1/200 300\n"),
            Some([0.5, 0.4, 100_000.0])
        );
        assert_eq!(load("0.5"), None);
    }

    #[test]
    fn a_sample_has_the_official_fields_and_bounds() {
        let v = sample(Path::new("/"));
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
        assert!((1..=4096).contains(&n("cpuCount")));
        assert!(n("memoryFreeBytes") <= n("memoryTotalBytes"));
        assert!(n("memoryTotalBytes") > 0);
        assert!(n("diskAvailableBytes") <= n("diskTotalBytes"));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in &keys {
            assert!(
                [
                    "cpuCount",
                    "loadAverage",
                    "memoryTotalBytes",
                    "memoryFreeBytes",
                    "diskTotalBytes",
                    "diskAvailableBytes"
                ]
                .contains(k),
                "{k}"
            );
        }
    }
}
