//! `olivine plugin ...` as plugin developers and merchants run it: scaffold a crate of
//! every world, build it for wasm32-wasip2, run its fixtures in the sandbox, package it,
//! and manage it in a running kernel through the admin API.
//!
//! Every scaffold compiles the SDK for wasm32; they all share one CARGO_TARGET_DIR (kept
//! across runs under the cargo target dir) so that happens once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::process::free_port;

const TOKEN: &str = "cli-plugin-test-token-0123456789";

fn guest_target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-plugin-guests")
}

struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `olivine <args>` in `dir` with nothing inherited that would point it at
/// another kernel or token.
fn olivine(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut command = Command::new(env!("CARGO_BIN_EXE_olivine"));
    command
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", guest_target_dir())
        .env("RUST_LOG", "warn")
        .env_remove("OLIVINE_URL")
        .env_remove("OLIVINE_ADMIN_TOKEN")
        .env_remove("OLIVINE_DATA_DIR");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run olivine");
    Outcome {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn succeeds(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = olivine(dir, args, env);
    assert!(
        out.success,
        "olivine {args:?} failed\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// Asserts the command fails and its stderr mentions every one of `needles`.
fn fails(dir: &Path, args: &[&str], env: &[(&str, &str)], needles: &[&str]) -> Outcome {
    let out = olivine(dir, args, env);
    assert!(
        !out.success,
        "olivine {args:?} should have failed\n--- stdout\n{}",
        out.stdout
    );
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "olivine {args:?}: stderr lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.stdout,
            out.stderr
        );
    }
    out
}

/// A kernel on a fresh SQLite store, as `olivine serve` runs for a merchant.
struct Kernel {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Kernel {
    fn start() -> Kernel {
        let data = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_olivine"))
            .arg("serve")
            .env("OLIVINE_ADDR", format!("127.0.0.1:{port}"))
            .env("OLIVINE_DATA_DIR", data.path())
            .env("OLIVINE_ADMIN_TOKEN", TOKEN)
            .env("OLIVINE_SEED_DEMO", "false")
            .env("OLIVINE_BUNDLED_PLUGINS", "false")
            .env("OLIVINE_WATCH_PLUGINS", "false")
            .env(
                "OLIVINE_PLUGIN_CACHE_DIR",
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"),
            )
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("olivine serve starts");
        let kernel = Kernel {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(format!("{}/readyz", kernel.url)).call().is_err() {
            assert!(Instant::now() < deadline, "the kernel did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        kernel
    }

    /// The environment a merchant's shell would have.
    fn env(&self) -> [(&'static str, &str); 2] {
        [("OLIVINE_URL", &self.url), ("OLIVINE_ADMIN_TOKEN", TOKEN)]
    }

    /// The plugin as the admin API reports it, read independently of the CLI.
    fn plugin(&self, id: &str) -> Value {
        ureq::get(format!("{}/api/v1/admin/plugins/{id}", self.url))
            .header("authorization", format!("Bearer {TOKEN}"))
            .call()
            .expect("GET plugin")
            .body_mut()
            .read_json()
            .expect("plugin JSON")
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_version(crate_dir: &Path, from: &str, to: &str) {
    let path = crate_dir.join("plugin.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replace(
        &format!("version = \"{from}\""),
        &format!("version = \"{to}\""),
    );
    assert_ne!(text, edited);
    std::fs::write(path, edited).unwrap();
}

#[test]
fn a_pricing_rule_from_scaffold_to_a_running_kernel() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let created = succeeds(work, &["plugin", "new", "pricing-rule", "ten-off"], &[]);
    assert!(created.contains("created the pricing-rule plugin `ten-off`"));
    let crate_dir = work.join("ten-off");
    for file in [
        "Cargo.toml",
        "plugin.toml",
        "src/lib.rs",
        "README.md",
        "fixtures/lines-with-enough-units.json",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file}");
    }

    // Build: compiled, checked in the sandbox, fixtures run, package written.
    let built = succeeds(&crate_dir, &["plugin", "build"], &[]);
    assert!(
        built.contains("building ten-off for wasm32-wasip2"),
        "{built}"
    );
    assert!(built.contains("2 fixtures passed"), "{built}");
    let package = crate_dir.join("target/olivine/ten-off-0.1.0.olpkg");
    assert!(built.contains("wrote"), "{built}");
    assert!(package.is_file());
    let package_arg = package.to_str().unwrap();

    // Test, from the crate (default `.`) and from the package.
    let tested = succeeds(&crate_dir, &["plugin", "test"], &[]);
    assert!(
        tested.contains("ok      lines-with-enough-units.json"),
        "{tested}"
    );
    assert!(
        tested.contains("ok      percent-out-of-range.json"),
        "{tested}"
    );
    assert!(tested.contains("2 fixtures passed"), "{tested}");
    let tested = succeeds(work, &["plugin", "test", package_arg], &[]);
    assert!(tested.contains("2 fixtures passed"), "{tested}");

    // A fixture that does not hold fails `test` and `build`, naming it.
    let broken = crate_dir.join("fixtures/wrong-amount.json");
    let fixture = std::fs::read_to_string(crate_dir.join("fixtures/lines-with-enough-units.json"))
        .unwrap()
        .replace("-600", "-601");
    std::fs::write(&broken, fixture).unwrap();
    let out = fails(
        &crate_dir,
        &["plugin", "test"],
        &[],
        &["1 of 3 fixtures failed"],
    );
    assert!(
        out.stdout.contains("FAILED  wrong-amount.json: expected"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("2 of 3 fixtures passed"),
        "{}",
        out.stdout
    );
    fails(&crate_dir, &["plugin", "build"], &[], &["would refuse"]);
    std::fs::remove_file(&broken).unwrap();

    // A manifest that names another world or ABI fails at the sandbox's load check.
    let manifest_path = crate_dir.join("plugin.toml");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let wrong_world = manifest.replace("world = \"pricing-rule\"", "world = \"loyalty-rule\"");
    std::fs::write(&manifest_path, wrong_world).unwrap();
    fails(
        &crate_dir,
        &["plugin", "test"],
        &[],
        &["the kernel would refuse this component", "loyalty-rule"],
    );
    std::fs::write(
        &manifest_path,
        manifest.replace("abi = \"0.1\"", "abi = \"0.9\""),
    )
    .unwrap();
    fails(
        &crate_dir,
        &["plugin", "build"],
        &[],
        &["incompatible plugin ABI"],
    );
    std::fs::write(&manifest_path, &manifest).unwrap();
    let developer = started.elapsed();

    // The merchant's side.
    let kernel = Kernel::start();
    let env = kernel.env();
    let installed = succeeds(work, &["plugin", "install", package_arg], &env);
    assert!(installed.contains("installed ten-off 0.1.0"), "{installed}");
    let listed = succeeds(work, &["plugin", "list"], &env);
    let row = listed
        .lines()
        .find(|l| l.starts_with("ten-off "))
        .unwrap_or_else(|| panic!("{listed}"));
    for cell in ["pricing-rule", "0.1.0", "enabled", "100"] {
        assert!(row.contains(cell), "{row}");
    }
    let plugin = kernel.plugin("ten-off");
    assert_eq!(plugin["enabled"], true);
    assert_eq!(plugin["loaded"], true);

    // configure merges into the current settings; `key=` removes one.
    succeeds(
        work,
        &["plugin", "configure", "ten-off", "percent_off=20"],
        &env,
    );
    succeeds(
        work,
        &["plugin", "configure", "ten-off", "min_quantity=2"],
        &env,
    );
    assert_eq!(
        kernel.plugin("ten-off")["settings"],
        json!({"percent_off": "20", "min_quantity": "2"})
    );
    let shown = succeeds(
        work,
        &["plugin", "configure", "ten-off", "percent_off="],
        &env,
    );
    assert!(shown.contains("settings:    min_quantity=2"), "{shown}");
    assert_eq!(
        kernel.plugin("ten-off")["settings"],
        json!({"min_quantity": "2"})
    );
    fails(
        work,
        &[
            "plugin",
            "configure",
            "ten-off",
            "percent_off=lots",
            "bogus=1",
        ],
        &env,
        &[
            "422",
            "settings.percent_off",
            "settings.bogus: not a setting of this plugin",
        ],
    );
    fails(
        work,
        &["plugin", "configure", "ten-off", "percent_off"],
        &env,
        &["expected key=value"],
    );

    succeeds(work, &["plugin", "disable", "ten-off"], &env);
    assert_eq!(kernel.plugin("ten-off")["enabled"], false);
    assert!(
        succeeds(work, &["plugin", "list"], &env).contains("disabled"),
        "list shows the state"
    );
    succeeds(work, &["plugin", "enable", "ten-off"], &env);
    assert_eq!(kernel.plugin("ten-off")["enabled"], true);
    succeeds(work, &["plugin", "priority", "ten-off", "5"], &env);
    assert_eq!(kernel.plugin("ten-off")["priority"], 5);

    // A new version installed from the crate directory (built and packaged first), then
    // rolled back and activated again.
    set_version(&crate_dir, "0.1.0", "0.2.0");
    let installed = succeeds(
        work,
        &["plugin", "install", crate_dir.to_str().unwrap()],
        &env,
    );
    assert!(installed.contains("installed ten-off 0.2.0"), "{installed}");
    assert!(
        crate_dir
            .join("target/olivine/ten-off-0.2.0.olpkg")
            .is_file()
    );
    let plugin = kernel.plugin("ten-off");
    assert_eq!(
        (&plugin["active_version"], &plugin["previous_version"]),
        (&json!("0.2.0"), &json!("0.1.0"))
    );
    succeeds(work, &["plugin", "rollback", "ten-off"], &env);
    assert_eq!(kernel.plugin("ten-off")["active_version"], "0.1.0");
    succeeds(work, &["plugin", "activate", "ten-off", "0.2.0"], &env);
    assert_eq!(kernel.plugin("ten-off")["active_version"], "0.2.0");
    fails(
        work,
        &["plugin", "activate", "ten-off", "9.9.9"],
        &env,
        &["422", "version: ten-off 9.9.9 is not installed"],
    );

    // --no-activate stores a version and leaves the active one.
    set_version(&crate_dir, "0.2.0", "0.3.0");
    let installed = succeeds(
        work,
        &[
            "plugin",
            "install",
            "--no-activate",
            crate_dir.to_str().unwrap(),
        ],
        &env,
    );
    assert!(
        installed.contains("the active version stays 0.2.0"),
        "{installed}"
    );
    let plugin = kernel.plugin("ten-off");
    assert_eq!(plugin["active_version"], "0.2.0");
    assert_eq!(plugin["versions"].as_array().map(Vec::len), Some(3));

    // Hosts: a pricing rule declares none, so granting one is refused.
    fails(
        work,
        &["plugin", "grant-hosts", "ten-off", "api.example.com"],
        &env,
        &["422", "granted_hosts[0]"],
    );
    succeeds(work, &["plugin", "decisions", "ten-off"], &env);
    let none = succeeds(
        work,
        &["plugin", "decisions", "ten-off", "--input-hash", "ABC123"],
        &env,
    );
    assert!(none.contains("no decisions recorded"), "{none}");
    fails(
        work,
        &[
            "plugin",
            "decisions",
            "ten-off",
            "--input-hash",
            "x&limit=1",
        ],
        &env,
        &["not an input hash"],
    );
    fails(
        work,
        &["plugin", "rollback", "nothing-here"],
        &env,
        &["404", "not found"],
    );

    // The token from the file `olivine serve` writes into its data directory; a wrong one.
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("admin-token"), format!("{TOKEN}\n")).unwrap();
    let data_dir = data.path().to_str().unwrap();
    let listed = succeeds(
        work,
        &["plugin", "list"],
        &[("OLIVINE_URL", &kernel.url), ("OLIVINE_DATA_DIR", data_dir)],
    );
    assert!(listed.contains("ten-off"), "{listed}");
    fails(
        work,
        &["plugin", "list", "--token", "not-the-token-at-all"],
        &[("OLIVINE_URL", &kernel.url)],
        &["401", "a valid bearer token is required"],
    );

    // A corrupt package: the kernel's 422 and its field message, and a non-zero exit.
    let corrupt = work.join("corrupt.olpkg");
    std::fs::write(
        &corrupt,
        json!({
            "manifest": manifest.replace("0.1.0", "0.4.0"),
            "wasm_base64": "bm90IGEgY29tcG9uZW50",
            "fixtures": {},
        })
        .to_string(),
    )
    .unwrap();
    fails(
        work,
        &["plugin", "install", corrupt.to_str().unwrap()],
        &env,
        &["HTTP 422", "wasm: "],
    );
    assert_eq!(
        kernel.plugin("ten-off")["versions"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // A notification channel: installed disabled, then granted its declared host.
    succeeds(
        work,
        &["plugin", "new", "notification-channel", "pager"],
        &[],
    );
    let pager = work.join("pager");
    succeeds(
        work,
        &["plugin", "install", "--disabled", pager.to_str().unwrap()],
        &env,
    );
    assert_eq!(kernel.plugin("pager")["enabled"], false);
    succeeds(
        work,
        &["plugin", "grant-hosts", "pager", "notify.example.com"],
        &env,
    );
    assert_eq!(
        kernel.plugin("pager")["granted_hosts"],
        json!(["notify.example.com"])
    );
    eprintln!(
        "developer steps {:.1}s, whole test {:.1}s",
        developer.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn every_world_scaffolds_into_a_crate_that_passes_its_tests() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    for (world, expected) in [
        ("variant-taxonomy", "3 fixtures passed"),
        ("loyalty-rule", "2 fixtures passed"),
        ("payment-adapter", "1 fixture passed"),
        ("notification-channel", "1 fixture passed"),
    ] {
        let name = format!("my-{world}");
        succeeds(tmp.path(), &["plugin", "new", world, &name], &[]);
        let crate_dir = tmp.path().join(&name);
        let tested = succeeds(&crate_dir, &["plugin", "test"], &[]);
        assert!(tested.contains(expected), "{world}: {tested}");
        assert!(!tested.contains("FAILED"), "{world}: {tested}");
        // The crate's own native tests (the SDK's fixture runner, mocked HTTP).
        let output = Command::new(&cargo)
            .args(["test", "--quiet"])
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", guest_target_dir())
            .output()
            .expect("cargo test");
        assert!(
            output.status.success(),
            "{world}: cargo test failed\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eprintln!(
        "four worlds scaffolded and tested in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn bad_input_is_refused_with_clear_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    fails(
        work,
        &["plugin", "new", "coffee-machine", "brew"],
        &[],
        &["coffee-machine", "pricing-rule", "notification-channel"],
    );
    for bad in ["Ten_Off", "ab", "9lives"] {
        fails(
            work,
            &["plugin", "new", "pricing-rule", bad],
            &[],
            &["is not a valid plugin name"],
        );
    }
    fails(
        work,
        &["plugin", "new", "pricing-rule", "crate"],
        &[],
        &["reserved"],
    );
    std::fs::create_dir(work.join("taken")).unwrap();
    std::fs::write(work.join("taken/notes.txt"), "mine").unwrap();
    fails(
        work,
        &["plugin", "new", "pricing-rule", "taken"],
        &[],
        &["already exists and is not empty"],
    );
    fails(
        work,
        &[
            "plugin",
            "new",
            "pricing-rule",
            "elsewhere",
            "--sdk",
            "/no/such/sdk",
        ],
        &[],
        &["is not the olivine-sdk crate", "--sdk"],
    );
    assert!(!work.join("elsewhere").exists());
    fails(work, &["plugin", "build"], &[], &["has no Cargo.toml"]);
    fails(
        work,
        &["plugin", "test", "missing.olpkg"],
        &[],
        &["neither a plugin crate directory nor a .olpkg package"],
    );
    let not_json = work.join("not-json.olpkg");
    std::fs::write(&not_json, "garbage").unwrap();
    fails(
        work,
        &["plugin", "test", not_json.to_str().unwrap()],
        &[],
        &["is not a plugin package"],
    );

    // Merchant commands without a kernel, a token or a plain-HTTP URL.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let token = [("OLIVINE_ADMIN_TOKEN", TOKEN)];
    fails(
        work,
        &["plugin", "list", "--url", &nobody],
        &token,
        &["the kernel is not running at", &nobody],
    );
    let package = work.join("some.olpkg");
    std::fs::write(
        &package,
        json!({"manifest": "", "wasm_base64": "", "fixtures": {}}).to_string(),
    )
    .unwrap();
    fails(
        work,
        &[
            "plugin",
            "install",
            package.to_str().unwrap(),
            "--url",
            &nobody,
        ],
        &token,
        &["the kernel is not running at"],
    );
    fails(
        work,
        &["plugin", "list", "--url", "https://shop.example.com"],
        &token,
        &["plain HTTP only"],
    );
    fails(
        work,
        &["plugin", "list", "--url", &nobody],
        &[("OLIVINE_DATA_DIR", work.to_str().unwrap())],
        &["no admin token", "admin-token"],
    );
}
