//! Builds the first-party plugins in `../plugins` for wasm32-wasip2 and embeds them in
//! the binary (see src/plugins/bundled.rs). Installs the wasm target with rustup when it
//! is missing. `OLIVINE_SKIP_PLUGIN_BUILD=1` embeds none (for tools that cannot build
//! guests).

use std::path::{Path, PathBuf};
use std::process::Command;

/// (directory under plugins/, enabled after install)
const BUNDLED: &[(&str, bool)] = &[
    ("supplements-taxonomy", true),
    ("skincare-taxonomy", true),
    ("subscribe-and-save", true),
    // Needs its offer (percent_off or bundle_price_minor) set first.
    ("multi-buy", false),
    ("tiered-volume", true),
    ("loyalty-points", true),
    // Needs its category and window set first.
    ("category-campaign", false),
    // Needs a webhook URL first.
    ("webhook-notifier", false),
    // Needs the processor's base URL and a granted host first.
    ("sandbox-payments", false),
    // Needs the Apple team id, key id and .p8 key, and a granted APNs host first.
    ("apns", false),
    // Needs the Firebase project and service account key, and granted Google hosts first.
    ("fcm", false),
    // Needs the email API's server token and sender, and a granted host first.
    ("email", false),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .parent()
        .expect("kernel/ is inside the repository")
        .to_path_buf();
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("bundled_plugins.rs");
    println!("cargo:rerun-if-env-changed=OLIVINE_SKIP_PLUGIN_BUILD");
    for path in [
        "wit",
        "sdk/src",
        "sdk/Cargo.toml",
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    // The whole crate directory (cargo scans a directory's files): a path that does not
    // exist, such as a plugin without fixtures/, would make every build rerun this.
    for (dir, _) in BUNDLED {
        println!(
            "cargo:rerun-if-changed={}",
            root.join("plugins").join(dir).display()
        );
    }
    if std::env::var_os("OLIVINE_SKIP_PLUGIN_BUILD").is_some() {
        std::fs::write(&out, "pub const BUNDLED: &[BundledPlugin] = &[];\n")
            .expect("write bundled_plugins.rs");
        return;
    }
    ensure_target();
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(root.join("plugins").join("Cargo.toml"));
    for (dir, _) in BUNDLED {
        command.args(["-p", dir]);
    }
    // The outer build's settings are for the host target (and clippy's wrapper).
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
    ] {
        command.env_remove(var);
    }
    let output = command.output().expect("run cargo to build the plugins");
    if !output.status.success() {
        panic!(
            "building the first-party plugins for {TARGET} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wasm_dir = root
        .join("plugins")
        .join("target")
        .join(TARGET)
        .join("release");
    let mut code = String::from("pub const BUNDLED: &[BundledPlugin] = &[\n");
    for (dir, enabled) in BUNDLED {
        let plugin_dir = root.join("plugins").join(dir);
        let manifest = plugin_dir.join("plugin.toml");
        let manifest_text = std::fs::read_to_string(&manifest).expect("plugin.toml");
        let id = manifest_text
            .lines()
            .find_map(|l| l.trim().strip_prefix("id = "))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_else(|| dir.to_string());
        let wasm = wasm_dir.join(format!("{}.wasm", dir.replace('-', "_")));
        let fixtures = fixtures(&plugin_dir.join("fixtures"));
        code.push_str(&format!(
            "    BundledPlugin {{ id: {id:?}, manifest: include_str!({:?}), wasm: include_bytes!({:?}), fixtures: &[{}], enabled: {enabled} }},\n",
            manifest.display().to_string(),
            wasm.display().to_string(),
            fixtures
                .iter()
                .map(|(name, path)| format!("({name:?}, include_str!({:?}))", path.display().to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    code.push_str("];\n");
    std::fs::write(&out, code).expect("write bundled_plugins.rs");
}

fn fixtures(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut list: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .map(|p| {
                    (
                        p.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        p,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    list.sort();
    list
}

fn ensure_target() {
    let Ok(output) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return; // no rustup: the toolchain was set up another way
    };
    if String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target (rustup target add {TARGET})");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .expect("run rustup");
    assert!(status.success(), "rustup target add {TARGET} failed");
}
