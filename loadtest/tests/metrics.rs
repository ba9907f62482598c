//! `GET /metrics` of the real server, read with a real Prometheus parser (the Python
//! `prometheus_client` package: `make deps-python` puts it in target/py), before and after the
//! bundled load generator ran against it: the exposition parses, every family has its type,
//! and the counters and the latency histogram move with the load.

use loadtest::probe::SfuProcess;
use loadtest::signaling::http_get;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(sys.stdin.read()))
print(json.dumps({
    "types": {f.name: f.type for f in families},
    "samples": [[s.name, s.labels, s.value] for f in families for s in f.samples],
}))
"#;

/// target/py/bin/python3 (make deps-python), else the python3 on PATH.
fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/py/bin/python3");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Parses an exposition with prometheus_client; panics with the parser's complaint.
fn parse(text: &str) -> Value {
    let mut child = Command::new(python())
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (make deps-python installs prometheus_client in target/py)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics (or prometheus_client is missing: make deps-python): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of sample `name` with label worker="0".
fn value(parsed: &Value, name: &str, extra: Option<(&str, &str)>) -> f64 {
    parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[0] == name && s[1]["worker"] == "0" && extra.is_none_or(|(k, v)| s[1][k] == v))
        .and_then(|s| s[2].as_f64())
        .unwrap_or_else(|| panic!("no sample {name} {extra:?}"))
}

#[test]
fn metrics_parse_with_a_real_prometheus_parser_and_move_with_a_loadtest() {
    let server = SfuProcess::start(&[]);
    let before = parse(&http_get(&server.host(), "/metrics").expect("GET /metrics"));
    let types = &before["types"];
    for (family, kind) in [
        ("sfu_rooms", "gauge"),
        ("sfu_consumers", "gauge"),
        ("sfu_packets_in", "counter"),
        ("sfu_bytes_out", "counter"),
        ("sfu_panics", "counter"),
        ("sfu_forward_latency_seconds", "histogram"),
    ] {
        assert_eq!(types[family], kind, "{family}: {types}");
    }
    assert_eq!(value(&before, "sfu_packets_in_total", None), 0.0);

    let load = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--url",
            &server.url(),
            "--subscribers",
            "4",
            "--duration",
            "2",
        ])
        .args(["--warmup", "1"])
        .stdout(Stdio::null())
        .status()
        .expect("run the loadtest");
    assert!(load.success());

    let after = parse(&http_get(&server.host(), "/metrics").expect("GET /metrics"));
    for counter in [
        "sfu_packets_in_total",
        "sfu_packets_out_total",
        "sfu_bytes_out_total",
    ] {
        assert!(
            value(&after, counter, None) > 100.0,
            "{counter} did not move with the load"
        );
    }
    let samples = value(&after, "sfu_forward_latency_seconds_count", None);
    let inf = value(
        &after,
        "sfu_forward_latency_seconds_bucket",
        Some(("le", "+Inf")),
    );
    let ms = value(
        &after,
        "sfu_forward_latency_seconds_bucket",
        Some(("le", "0.001")),
    );
    assert!(samples > 0.0 && inf == samples, "{samples} {inf}");
    assert!(ms > 0.0 && ms <= inf, "buckets are cumulative: {ms} {inf}");
    assert!(value(&after, "sfu_forward_latency_seconds_sum", None) > 0.0);
}
