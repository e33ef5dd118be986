//! Building guest crates for `wasm32-wasip2`: used by tests, by `olivine plugin build`
//! and by the kernel to bundle its first-party plugins. Installs the target with rustup
//! when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub const TARGET: &str = "wasm32-wasip2";

/// Makes sure rustup has the wasm32-wasip2 target.
pub fn ensure_target() -> anyhow::Result<()> {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return Ok(());
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let has = match &installed {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == TARGET),
        // No rustup: assume the toolchain was set up some other way.
        Err(_) => true,
    };
    if !has {
        eprintln!("installing the {TARGET} target (rustup target add {TARGET})");
        let status = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()?;
        anyhow::ensure!(status.success(), "rustup target add {TARGET} failed");
    }
    *done = true;
    Ok(())
}

/// Builds every crate of a guest workspace (or a single guest crate) in release mode
/// and returns the directory holding the `.wasm` files.
pub fn build_guest(manifest_path: &Path) -> anyhow::Result<PathBuf> {
    build_guest_into(manifest_path, None)
}

/// Like [`build_guest`], but with `Some(dir)` builds into that target directory
/// instead of the crate's own `target/`. Several guest crates can then share one target
/// directory and compile the SDK once (`olivine plugin build` passes the directory
/// `cargo metadata` reports, which also covers a crate inside a workspace).
pub fn build_guest_into(
    manifest_path: &Path,
    target_dir: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    ensure_target()?;
    let manifest_path = manifest_path.canonicalize()?;
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest_path)
        // A kernel build script or test may run inside another cargo: keep that cargo's
        // settings for the host target out of the guest build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR");
    if let Some(dir) = target_dir {
        command.env("CARGO_TARGET_DIR", dir);
    }
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "building {} for {TARGET} failed:\n{}",
        manifest_path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let target_dir = match target_dir {
        Some(dir) => dir.to_path_buf(),
        None => manifest_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("target"),
    };
    Ok(target_dir.join(TARGET).join("release"))
}

/// The repository's first-party plugins (`plugins/`), built; returns the `.wasm` dir.
/// Serialised within a process so parallel tests build once.
pub fn first_party_plugins(repo_root: &Path) -> anyhow::Result<PathBuf> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = built.as_ref() {
        return Ok(dir.clone());
    }
    let dir = build_guest(&repo_root.join("plugins").join("Cargo.toml"))?;
    *built = Some(dir.clone());
    Ok(dir)
}
