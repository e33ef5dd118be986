//! The watched plugins directory: a package there at start is installed; one dropped
//! while the kernel runs is hot-loaded; a broken one is rejected with a clear message
//! while the active version stays.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use olivine::plugins::watch::{Outcome, load_file};
use serde_json::{Value, json};

fn tiered_volume(version: &str) -> Value {
    plugin_upload("tiered-volume", "tiered_volume", |m| {
        m.replace("version = \"0.1.0\"", &format!("version = \"{version}\""))
    })
}

/// Writes a package the way a careful operator copies one: to a temporary name, then a
/// rename into place.
fn drop_package(dir: &Path, name: &str, package: &Value) {
    let tmp = dir.join(format!(".{name}.partial"));
    std::fs::write(&tmp, package.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn active_version(app: &TestApp) -> String {
    let info = app
        .admin_get("/api/v1/admin/plugins/tiered-volume")
        .await
        .json();
    info["active_version"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn wait_for_version(app: &TestApp, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while active_version(app).await != version {
        assert!(Instant::now() < deadline, "{version} never became active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both_backends! {
    async fn packages_dropped_in_the_plugins_directory_are_hot_loaded(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        drop_package(dir.path(), "tiered-volume-0.1.0.olpkg", &tiered_volume("0.1.0"));
        let plugins_dir = dir.path().to_owned();
        let app = TestApp::start_with(backend, move |c| {
            c.watch_plugins = true;
            c.plugins_dir = Some(plugins_dir);
        }).await;
        // Installed at start, before the kernel serves.
        assert_eq!(active_version(&app).await, "0.1.0");

        // A new version dropped in while the kernel runs becomes the active one.
        drop_package(dir.path(), "tiered-volume-0.2.0.olpkg", &tiered_volume("0.2.0"));
        wait_for_version(&app, "0.2.0").await;

        // A file written slowly, in two halves, is read once it is complete.
        let text = tiered_volume("0.2.1").to_string();
        let head = &text[..text.len() / 2];
        let path = dir.path().join("tiered-volume-0.2.1.olpkg");
        std::fs::write(&path, head).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(&path, &text).unwrap();
        wait_for_version(&app, "0.2.1").await;

        // Broken packages are refused; the active version stays.
        let mut broken = tiered_volume("0.3.0");
        broken["wasm_base64"] = json!("bm90IHdhc20=");
        drop_package(dir.path(), "broken.olpkg", &broken);
        std::fs::write(dir.path().join("garbage.olpkg"), "{ not json").unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(active_version(&app).await, "0.2.1");
        let versions = app.admin_get("/api/v1/admin/plugins/tiered-volume").await.json()["versions"].to_string();
        assert!(!versions.contains("0.3.0"), "{versions}");
        // What the log line says about each of them.
        let plugins = &app.kernel.state.plugins;
        match load_file(plugins, &dir.path().join("broken.olpkg")).await {
            Outcome::Rejected(why) => assert!(why.contains("not a WebAssembly component"), "{why}"),
            other => panic!("{other:?}"),
        }
        match load_file(plugins, &dir.path().join("garbage.olpkg")).await {
            Outcome::Rejected(why) => assert!(why.contains("is not a plugin package"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A package already installed with the same content changes nothing, so a
        // rollback survives the files left in the directory.
        let r = app.admin_post("/api/v1/admin/plugins/tiered-volume/rollback", &json!({})).await;
        assert_eq!(r.status, axum::http::StatusCode::OK, "{}", r.text());
        assert_eq!(active_version(&app).await, "0.2.0");
        assert_eq!(load_file(plugins, &dir.path().join("tiered-volume-0.2.1.olpkg")).await, Outcome::Unchanged);
        assert_eq!(active_version(&app).await, "0.2.0");

        // The watcher is still alive after the rejections.
        drop_package(dir.path(), "tiered-volume-0.4.0.olpkg", &tiered_volume("0.4.0"));
        wait_for_version(&app, "0.4.0").await;
        app.stop().await;
    }
}
