//! The `olivine` binary as an operator runs it: crashes at the worst moment lose nothing
//! half-done, SIGTERM drains in-flight requests, and the CLI commands work.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::common::process::*;
use crate::common::*;

fn product_json(slug: &str, sku: &str) -> String {
    let mut p = supplement(slug, sku);
    p["categories"] = serde_json::json!([]);
    p.to_string()
}

both_backends! {
    async fn a_crash_between_change_and_event_leaves_neither(backend: Backend) {
        let db = TestDb::new(backend).await;
        let port = free_port();
        // Abort right after the product row is written, before its variants and event.
        let mut child = spawn(&db, port, "catalog.after_product_insert");
        wait_ready(port);
        let answer = http(port, "POST", "/api/v1/admin/products", Some(&product_json("crash", "CRASH")));
        assert!(answer.is_none(), "the process should have died mid-request: {answer:?}");
        assert!(!wait_exit(&mut child).success());

        let conn = db.connect().await;
        assert_eq!(scalar(&conn, "SELECT CAST(COUNT(*) AS BIGINT) FROM products").await, 0);
        assert_eq!(scalar(&conn, "SELECT CAST(COUNT(*) AS BIGINT) FROM variants").await, 0);
        assert_eq!(scalar(&conn, "SELECT CAST(COUNT(*) AS BIGINT) FROM outbox").await, 0);

        // Restarted without the failpoint, the same request succeeds and its event is
        // delivered.
        let mut child = spawn(&db, port, "");
        wait_ready(port);
        let (status, body) = http(port, "POST", "/api/v1/admin/products", Some(&product_json("crash", "CRASH"))).unwrap();
        assert_eq!(status, 201, "{body}");
        wait_settled(port);
        assert_eq!(scalar(&conn, "SELECT CAST(COUNT(*) AS BIGINT) FROM outbox").await, 1);
        child.kill().ok();
        child.wait().ok();
        conn.close().await;
        db.drop().await;
    }

    async fn a_crash_between_ledger_and_event_loses_no_stock_history(backend: Backend) {
        let db = TestDb::new(backend).await;
        let port = free_port();
        let mut child = spawn(&db, port, "");
        wait_ready(port);
        http(port, "POST", "/api/v1/admin/locations", Some(r#"{"code":"AMS-1","name":"Amsterdam"}"#)).unwrap();
        let (status, body) = http(port, "POST", "/api/v1/admin/products", Some(&product_json("mag", "MAG"))).unwrap();
        assert_eq!(status, 201, "{body}");
        child.kill().ok();
        child.wait().ok();

        let mut child = spawn(&db, port, "inventory.after_ledger");
        wait_ready(port);
        let lot = serde_json::json!({"sku": "MAG-60", "location": "AMS-1", "batch": "B1",
            "manufactured_on": date_in(-10), "expires_on": date_in(300), "quantity": 10}).to_string();
        assert!(http(port, "POST", "/api/v1/admin/lots", Some(&lot)).is_none());
        assert!(!wait_exit(&mut child).success());
        let conn = db.connect().await;
        assert_eq!(scalar(&conn, "SELECT CAST(COUNT(*) AS BIGINT) FROM lots").await, 0);
        assert_eq!(scalar(&conn, "SELECT CAST(COUNT(*) AS BIGINT) FROM stock_ledger").await, 0);
        assert_eq!(scalar(&conn, "SELECT CAST(COUNT(*) AS BIGINT) FROM outbox WHERE event_type = 'stock.changed'").await, 0);
        conn.close().await;
        db.drop().await;
    }

    async fn events_a_crash_left_unnumbered_are_delivered_after_restart(backend: Backend) {
        let db = TestDb::new(backend).await;
        let port = free_port();
        // The sequencer dies before numbering the product's event: committed, but in no
        // consumer's view of the log yet.
        let mut child = spawn(&db, port, "bus.before_sequence");
        wait_ready(port);
        // The commit precedes the numbering, so the answer may or may not get out first.
        let answer = http(port, "POST", "/api/v1/admin/products", Some(&product_json("mag", "MAG")));
        assert!(matches!(answer, None | Some((201, _))), "{answer:?}");
        assert!(!wait_exit(&mut child).success());
        let conn = db.connect().await;
        assert_eq!(scalar(&conn, "SELECT CAST(COUNT(*) AS BIGINT) FROM products").await, 1);
        assert_eq!(scalar(&conn, "SELECT CAST(COUNT(*) AS BIGINT) FROM outbox WHERE position IS NULL").await, 1);
        assert_eq!(olivine::bus::pending_count(&conn).await.unwrap(), 1);

        // The next start numbers it and its consumers handle it.
        let mut child = spawn(&db, port, "");
        wait_ready(port);
        wait_settled(port);
        assert_eq!(olivine::bus::pending_count(&conn).await.unwrap(), 0);
        assert_eq!(scalar(&conn, "SELECT CAST(COUNT(*) AS BIGINT) FROM outbox WHERE position IS NULL").await, 0);
        child.kill().ok();
        child.wait().ok();
        conn.close().await;
        db.drop().await;
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let db = TestDb::new(Backend::Sqlite).await;
    let port = free_port();
    let mut child = spawn(&db, port, "");
    wait_ready(port);
    // Start a request and send only half its body.
    let body = r#"{"code":"AMS-1","name":"Amsterdam warehouse"}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /api/v1/admin/locations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::thread::sleep(Duration::from_millis(300));
    // The server is draining: it still finishes the request in flight.
    stream.write_all(&body.as_bytes()[10..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let status = wait_exit(&mut child);
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    db.drop().await;
}

#[test]
fn migrate_and_seed_commands() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_olivine"))
            .args(args)
            .env("OLIVINE_DATA_DIR", dir.path())
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run(&["migrate"]).contains("31 migration(s) applied"));
    assert!(run(&["migrate"]).contains("0 migration(s) applied"));
    let seeded = run(&["seed"]);
    assert!(
        seeded.contains("products: 44/44") || seeded.contains("seeded 4"),
        "{seeded}"
    );
    // Seeding again skips what is there.
    assert!(run(&["seed"]).contains("seeded 0 product(s)"));
}
