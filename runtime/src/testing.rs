//! A plugin crate's fixtures run through the real host from the crate's own `cargo
//! test`: the crate is built for wasm32-wasip2, loaded with its `plugin.toml` exactly as
//! the kernel loads it (world, ABI and import checks, fuel, memory and output caps), and
//! every `fixtures/*.json` is called on the component. Plugin authors reach it as
//! `olivine_sdk::testing::host::check_fixtures` (SDK feature `host`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::{Manifest, Runtime, RuntimeConfig, build, fixtures};

/// Where the component is built: `OLIVINE_HOST_TEST_TARGET_DIR`, else
/// `<crate>/target/olivine-host-test`. Not the target directory of the running `cargo
/// test`, whose lock that cargo holds.
fn target_dir(crate_dir: &Path) -> PathBuf {
    std::env::var_os("OLIVINE_HOST_TEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir.join("target").join("olivine-host-test"))
}

fn crate_name(crate_dir: &Path) -> anyhow::Result<String> {
    let path = crate_dir.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    value
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no [package] name", path.display()))
}

/// Builds the component of the crate in `crate_dir` and returns its bytes.
pub fn build_component(crate_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let name = crate_name(crate_dir)?;
    let out = build::build_guest_into(&crate_dir.join("Cargo.toml"), Some(&target_dir(crate_dir)))?;
    let wasm = out.join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))
}

/// Runs the crate's fixtures through the real host; returns how many passed.
pub fn run_fixtures(crate_dir: &Path) -> anyhow::Result<usize> {
    let manifest_path = crate_dir.join("plugin.toml");
    let manifest_text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = Manifest::parse(&manifest_text).map_err(|problems| {
        anyhow::anyhow!(
            "plugin.toml: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let wasm = build_component(crate_dir)?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(target_dir(crate_dir).join("olivine-compiled")),
        ..RuntimeConfig::default()
    })?;
    let plugin = runtime.load(manifest, &wasm, None)?;
    let fixtures = fixtures::read_dir(&crate_dir.join("fixtures"))?;
    anyhow::ensure!(
        !fixtures.is_empty(),
        "no fixtures in {}",
        crate_dir.join("fixtures").display()
    );
    let outcomes = fixtures::run_all(&plugin, &fixtures);
    let failures: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| format!("  {}: {}", o.name, o.message))
        .collect();
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {} fixtures failed through the host:\n{}",
        failures.len(),
        outcomes.len(),
        failures.join("\n")
    );
    Ok(outcomes.len())
}

/// For a plugin's `#[test]`: panics with every failure. Returns how many fixtures ran.
///
/// ```ignore
/// #[test]
/// fn fixtures_through_the_real_host() {
///     olivine_sdk::testing::host::check_fixtures(env!("CARGO_MANIFEST_DIR"));
/// }
/// ```
pub fn check_fixtures(crate_dir: &str) -> usize {
    match run_fixtures(Path::new(crate_dir)) {
        Ok(ran) => ran,
        Err(err) => panic!("{err:#}"),
    }
}
