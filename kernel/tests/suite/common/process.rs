//! The `olivine` binary in a process of its own, for what an in-process kernel cannot
//! show: crashes (failpoints abort the process), signals, restarts. Its settings go to
//! the child's environment only; the test process's environment is shared by every test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ADMIN_TOKEN, TestDb};

/// A port nothing listens on right now (the OS picks it; no fixed numbers).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `olivine serve` on `port` against the test's database, with the failpoints
/// `failpoints` (comma-separated; empty for none) armed.
pub fn spawn(db: &TestDb, port: u16, failpoints: &str) -> Child {
    spawn_with(db, port, failpoints, &[])
}

/// [`spawn`] with more settings for the child (`OLIVINE_…` variables).
pub fn spawn_with(db: &TestDb, port: u16, failpoints: &str, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_olivine"));
    command
        .arg("serve")
        .env("OLIVINE_ADDR", format!("127.0.0.1:{port}"))
        .env("OLIVINE_SEED_DEMO", "false")
        .env("OLIVINE_FAILPOINTS", failpoints)
        // These tests count outbox deliveries; bundled plugin installs would add events.
        .env("OLIVINE_BUNDLED_PLUGINS", "false")
        // A crashed process holds the cluster-once consumers' leases (the loyalty
        // processor's) until they run out; the restarted one takes them over after this.
        .env("OLIVINE_BUS_LEASE_SECS", "2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file(port));
    for (key, value) in db.env() {
        command.env(key, value);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("olivine starts")
}

/// One HTTP/1.1 request with the admin token on a fresh connection; `None` when the
/// server hung up without answering.
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let admin = format!("Bearer {ADMIN_TOKEN}");
    http_with_headers(port, method, path, &[("Authorization", &admin)], body)
}

/// One HTTP/1.1 request with exactly these headers (and the JSON content type); `None`
/// when the server hung up without answering.
pub fn http_with_headers(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((status, body))
}

/// Where the server on `port` logs (warnings and errors), for a failing test to show.
pub fn log_path(port: u16) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("olivine-{port}.log"))
}

fn log_file(port: u16) -> Stdio {
    std::fs::File::create(log_path(port))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// The end of the log of the server on `port`.
pub fn log_tail(port: u16) -> String {
    let text = std::fs::read_to_string(log_path(port)).unwrap_or_default();
    let start = text.len().saturating_sub(4000);
    text[text.ceil_char_boundary(start)..].to_owned()
}

/// Waits until the server on `port` answers `/readyz` with 200.
pub fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((200, _)) = http(port, "GET", "/readyz", None) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "server on port {port} did not become ready; its log ends:\n{}",
        log_tail(port)
    );
}

/// Waits (up to 30 s) for the process to exit.
pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to 10 s) until the server on `port` has handled every event in the log
/// (`olivine_bus_pending_events` 0 in its `/metrics`).
pub fn wait_settled(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((200, text)) = http(port, "GET", "/metrics", None)
            && super::metric_value(&text, "olivine_bus_pending_events") == 0.0
            && text.contains("olivine_bus_pending_events")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "events not handled on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
