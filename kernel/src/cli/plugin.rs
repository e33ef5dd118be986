//! `olivine plugin ...`: the plugin developer's commands (`new`, `build`, `test`), which
//! run locally against the same sandbox the kernel uses, and the merchant's commands
//! (`install`, `list`, `enable`, ...), which talk to a running kernel's admin API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use olivine_plugin_runtime::fixtures::FixtureOutcome;
use olivine_plugin_runtime::{Manifest, Runtime, RuntimeConfig, World};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::plugins::package::PackageUpload;

/// Where the admin API's plugin routes live.
const PLUGINS_PATH: &str = "/api/v1/admin/plugins";

#[derive(clap::Subcommand, Debug)]
pub enum PluginCommand {
    /// Create a plugin crate: Cargo.toml, plugin.toml, src/lib.rs, fixtures/, README.md.
    New {
        /// The extension point the plugin implements.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(World::ALL.map(World::name)))]
        world: String,
        /// Crate name and plugin id: 3-64 lowercase letters, digits and hyphens.
        name: String,
        /// Directory to create the crate in (as `<dir>/<name>`).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The olivine-sdk crate to depend on. Default: the SDK of the source tree this
        /// binary was built from.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate for wasm32-wasip2, check it in the sandbox, run its fixtures
    /// and write `<dir>/target/olivine/<id>-<version>.olpkg`.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a plugin's fixtures in the sandbox (a crate directory is built first).
    Test {
        /// A plugin crate directory or a `.olpkg` package.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Install a package (or a crate directory, built and packaged first) into a kernel.
    Install {
        /// A `.olpkg` package or a plugin crate directory.
        path: PathBuf,
        /// Store the version without making it the active one.
        #[arg(long)]
        no_activate: bool,
        /// On a first installation, leave the plugin disabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the installed plugins.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Enable a plugin.
    Enable {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Disable a plugin.
    Disable {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Change settings: `key=value` sets one, `key=` removes it (its default applies);
    /// the other settings stay as they are.
    Configure {
        id: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Set the order pricing rules run in (ascending).
    Priority {
        id: String,
        priority: i64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Grant outbound HTTP to hosts the plugin's manifest declares (replaces the grant).
    GrantHosts {
        id: String,
        #[arg(required = true)]
        hosts: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make an installed version the active one.
    Activate {
        id: String,
        version: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Go back to the previously active version.
    Rollback {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a plugin's recent decisions, newest first.
    Decisions {
        id: String,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        remote: Remote,
    },
}

/// How to reach a running kernel.
#[derive(clap::Args, Debug, Clone)]
pub struct Remote {
    /// The kernel's base URL (plain HTTP).
    #[arg(long, env = "OLIVINE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Admin API token. Unset: read `<data dir>/admin-token`, the file `olivine serve`
    /// writes.
    #[arg(long, env = "OLIVINE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The kernel's data directory, for its admin-token file.
    #[arg(long, env = "OLIVINE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

pub fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::New {
            world,
            name,
            dir,
            sdk,
        } => {
            let world = World::parse(&world).ok_or_else(|| {
                anyhow!(
                    "unknown world `{world}`; expected one of {}",
                    World::ALL.map(World::name).join(", ")
                )
            })?;
            new_plugin(world, &name, &dir, sdk.as_deref())
        }
        PluginCommand::Build { dir } => build_package(&dir).map(|_| ()),
        PluginCommand::Test { path } => test(&path),
        PluginCommand::Install {
            path,
            no_activate,
            disabled,
            remote,
        } => install(&Client::new(&remote)?, &path, !no_activate, !disabled),
        PluginCommand::List { remote } => list(&Client::new(&remote)?),
        PluginCommand::Enable { id, remote } => {
            patch(&Client::new(&remote)?, &id, json!({ "enabled": true }))
        }
        PluginCommand::Disable { id, remote } => {
            patch(&Client::new(&remote)?, &id, json!({ "enabled": false }))
        }
        PluginCommand::Configure {
            id,
            settings,
            remote,
        } => configure(&Client::new(&remote)?, &id, &settings),
        PluginCommand::Priority {
            id,
            priority,
            remote,
        } => patch(&Client::new(&remote)?, &id, json!({ "priority": priority })),
        PluginCommand::GrantHosts { id, hosts, remote } => patch(
            &Client::new(&remote)?,
            &id,
            json!({ "granted_hosts": hosts }),
        ),
        PluginCommand::Activate {
            id,
            version,
            remote,
        } => {
            let client = Client::new(&remote)?;
            let info: PluginInfo = client.send(
                "POST",
                &format!("{PLUGINS_PATH}/{}/activate", segment(&id)?),
                Some(&json!({ "version": version })),
            )?;
            print_info(&info);
            Ok(())
        }
        PluginCommand::Rollback { id, remote } => {
            let client = Client::new(&remote)?;
            let info: PluginInfo = client.send(
                "POST",
                &format!("{PLUGINS_PATH}/{}/rollback", segment(&id)?),
                None,
            )?;
            print_info(&info);
            Ok(())
        }
        PluginCommand::Decisions { id, limit, remote } => {
            decisions(&Client::new(&remote)?, &id, limit)
        }
    }
}

// ---- new ---------------------------------------------------------------------------------

/// Names cargo refuses for a package (Rust keywords and built-in crates).
#[rustfmt::skip]
const RESERVED_NAMES: &[&str] = &[
    "abstract", "alloc", "async", "await", "become", "box", "const", "continue", "core",
    "crate", "dyn", "else", "enum", "extern", "false", "final", "for", "gen", "impl", "let",
    "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "proc-macro", "pub",
    "ref", "return", "self", "static", "std", "struct", "super", "test", "trait", "true",
    "try", "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// The name is both the crate name and the plugin id, so it must satisfy both: the
/// kernel's id rule (3-64 of `a-z 0-9 -`) and cargo's (starts with a letter, no keyword).
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = (3..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    ensure!(
        valid,
        "`{name}` is not a valid plugin name: use 3-64 lowercase letters, digits and hyphens, \
         starting with a letter (it is both the crate name and the plugin id)"
    );
    ensure!(
        !RESERVED_NAMES.contains(&name),
        "`{name}` is reserved by Rust or cargo; choose another plugin name"
    );
    Ok(())
}

/// The SDK next to the source tree this binary was built from, if it is still there.
fn default_sdk() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk"));
    dir.join("Cargo.toml").is_file().then_some(dir)
}

fn new_plugin(world: World, name: &str, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<()> {
    check_name(name)?;
    let sdk = match sdk {
        Some(sdk) => sdk.to_path_buf(),
        None => default_sdk().ok_or_else(|| {
            anyhow!(
                "cannot find the olivine-sdk crate this binary was built with; \
                 pass --sdk <path to the sdk directory of an Olivine checkout>"
            )
        })?,
    };
    let sdk_manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap_or_default();
    ensure!(
        sdk_manifest.contains("name = \"olivine-sdk\""),
        "{} is not the olivine-sdk crate (no Cargo.toml naming olivine-sdk there); \
         pass --sdk <path to the sdk directory>",
        sdk.display()
    );
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("resolving {}", sdk.display()))?;
    let sdk = sdk
        .to_str()
        .ok_or_else(|| anyhow!("the SDK path {} is not UTF-8", sdk.display()))?;

    let root = dir.join(name);
    if root.exists() {
        ensure!(
            root.is_dir(),
            "{} exists and is not a directory",
            root.display()
        );
        let empty = std::fs::read_dir(&root)
            .with_context(|| format!("reading {}", root.display()))?
            .next()
            .is_none();
        ensure!(
            empty,
            "{} already exists and is not empty; choose another name or --dir",
            root.display()
        );
    }
    for (path, text) in scaffold(world, name, sdk) {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "created the {} plugin `{name}` in {}",
        world.name(),
        root.display()
    );
    println!("next:");
    println!("  cd {}", root.display());
    println!("  cargo test                 # unit tests and fixtures, natively");
    println!("  olivine plugin test        # fixtures in the kernel's sandbox");
    println!("  olivine plugin build       # writes target/olivine/{name}-0.1.0.olpkg");
    println!("  olivine plugin install .   # into the kernel at OLIVINE_URL");
    Ok(())
}

/// The files of a new plugin crate, relative to its directory.
fn scaffold(world: World, name: &str, sdk: &str) -> Vec<(&'static str, String)> {
    let t = template(world);
    // A JSON string is a valid TOML basic string: quotes and backslashes come escaped.
    let sdk = serde_json::to_string(sdk).unwrap_or_default();
    let fill = |text: &str| {
        text.replace("__NAME__", name)
            .replace("__WORLD__", world.name())
            .replace("__SDK__", &sdk)
            .replace("__SDK_FEATURES__", t.sdk_features)
            .replace("__EXTRA_DEPS__", t.extra_deps)
            .replace("__DESCRIPTION__", t.description)
    };
    let mut files = vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("plugin.toml", fill(t.plugin_toml)),
        ("src/lib.rs", fill(t.lib_rs)),
        (
            "README.md",
            fill(&README.replace("__WORLD_NOTES__", t.readme)),
        ),
        (".gitignore", "/target\n/Cargo.lock\n".to_owned()),
    ];
    files.extend(t.fixtures.iter().map(|(file, text)| (*file, fill(text))));
    files
}

// ---- build and test ---------------------------------------------------------------------

/// A plugin crate built for the sandbox.
struct Built {
    manifest: Manifest,
    wasm_path: PathBuf,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetadataPackage>,
    target_directory: PathBuf,
}

#[derive(Deserialize)]
struct MetadataPackage {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<MetadataTarget>,
}

#[derive(Deserialize)]
struct MetadataTarget {
    name: String,
    crate_types: Vec<String>,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Reads and checks `plugin.toml` as the kernel will.
fn read_manifest(crate_dir: &Path) -> anyhow::Result<Manifest> {
    let path = crate_dir.join("plugin.toml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a plugin crate: cannot read {}",
            crate_dir.display(),
            path.display()
        )
    })?;
    parse_manifest(&text).with_context(|| format!("in {}", path.display()))
}

fn parse_manifest(text: &str) -> anyhow::Result<Manifest> {
    Manifest::parse(text).map_err(|problems| {
        anyhow!(
            "the manifest is invalid:\n{}",
            problems
                .iter()
                .map(|p| format!("  {}: {}", p.field, p.message))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Builds the crate in `dir` for wasm32-wasip2 (release) and finds its component. The
/// crate may stand alone or sit in a workspace: `cargo metadata` names the package, its
/// library and the target directory the build writes to.
fn build(dir: &Path) -> anyhow::Result<Built> {
    let cargo_toml = dir.join("Cargo.toml");
    ensure!(
        cargo_toml.is_file(),
        "{} has no Cargo.toml: give the directory of a plugin crate",
        dir.display()
    );
    let manifest = read_manifest(dir)?;
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&cargo_toml)
        .output()
        .context("running cargo metadata (is cargo installed?)")?;
    ensure!(
        output.status.success(),
        "cargo metadata failed for {}:\n{}",
        cargo_toml.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let metadata: Metadata =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")?;
    let cargo_toml = cargo_toml
        .canonicalize()
        .with_context(|| format!("resolving {}", cargo_toml.display()))?;
    let package = metadata
        .packages
        .iter()
        // Compared canonical on both sides: the path may run through a symlink.
        .find(|p| p.manifest_path.canonicalize().ok().as_ref() == Some(&cargo_toml))
        .ok_or_else(|| {
            anyhow!(
                "{} is a workspace, not a crate: give the directory of one plugin crate",
                cargo_toml.display()
            )
        })?;
    let library = package
        .targets
        .iter()
        .find(|t| t.crate_types.iter().any(|c| c == "cdylib"))
        .ok_or_else(|| {
            anyhow!(
                "crate `{}` is not a cdylib; add `[lib] crate-type = [\"cdylib\"]` to its Cargo.toml",
                package.name
            )
        })?;
    println!(
        "building {} for {} (release)…",
        package.name,
        olivine_plugin_runtime::build::TARGET
    );
    let release_dir = olivine_plugin_runtime::build::build_guest_into(
        &cargo_toml,
        Some(&metadata.target_directory),
    )?;
    let wasm_path = release_dir.join(format!("{}.wasm", library.name.replace('-', "_")));
    ensure!(
        wasm_path.is_file(),
        "the build did not produce {}",
        wasm_path.display()
    );
    Ok(Built {
        manifest,
        wasm_path,
    })
}

/// Loads the component into the kernel's sandbox, as `install` does, so a component of
/// the wrong world or ABI fails here; then runs the fixtures.
fn check(
    manifest: Manifest,
    wasm: &[u8],
    fixtures: &[(String, String)],
) -> anyhow::Result<Vec<FixtureOutcome>> {
    let runtime = Runtime::new(RuntimeConfig::default()).context("starting the sandbox")?;
    let plugin = runtime
        .load(manifest, wasm, None)
        .map_err(|e| anyhow!("the kernel would refuse this component: {e}"))?;
    Ok(olivine_plugin_runtime::fixtures::run_all(&plugin, fixtures))
}

fn failed_fixtures(outcomes: &[FixtureOutcome]) -> Vec<&FixtureOutcome> {
    outcomes.iter().filter(|o| !o.passed).collect()
}

/// `olivine plugin build`: build, check, run the fixtures, write the package.
fn build_package(dir: &Path) -> anyhow::Result<PathBuf> {
    let built = build(dir)?;
    let package = PackageUpload::from_parts(dir, &built.wasm_path)?;
    let wasm = std::fs::read(&built.wasm_path)
        .with_context(|| format!("reading {}", built.wasm_path.display()))?;
    println!(
        "checking {} against the {} world…",
        built.wasm_path.display(),
        built.manifest.world.name()
    );
    let fixtures: Vec<(String, String)> = package
        .fixtures
        .iter()
        .map(|(name, text)| (name.clone(), text.clone()))
        .collect();
    let outcomes = check(built.manifest.clone(), &wasm, &fixtures)?;
    let failed = failed_fixtures(&outcomes);
    for outcome in &failed {
        println!("FAILED  {}: {}", outcome.name, outcome.message);
    }
    ensure!(
        failed.is_empty(),
        "{} of {} failed; the kernel would refuse this package",
        failed.len(),
        count(outcomes.len(), "fixture")
    );
    if outcomes.is_empty() {
        println!("no fixtures: the kernel will install it untested (add fixtures/*.json)");
    } else {
        println!("{} passed", count(outcomes.len(), "fixture"));
    }
    let out_dir = dir.join("target").join("olivine");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join(format!(
        "{}-{}.{}",
        built.manifest.id,
        built.manifest.version,
        crate::plugins::package::EXTENSION
    ));
    package.write(&path)?;
    println!(
        "wrote {} ({} KiB component)",
        path.display(),
        wasm.len().div_ceil(1024)
    );
    Ok(path)
}

/// `1 fixture`, `3 fixtures`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn is_package(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|e| e == crate::plugins::package::EXTENSION)
}

/// `olivine plugin test`: every fixture through the sandbox, one line each.
fn test(path: &Path) -> anyhow::Result<()> {
    let (manifest, wasm, fixtures) = if is_package(path) {
        let upload = PackageUpload::read(path)?;
        let manifest = parse_manifest(&upload.manifest)
            .with_context(|| format!("in the manifest of {}", path.display()))?;
        let package = upload
            .into_package()
            .map_err(|e| anyhow!("{}: {}", path.display(), e.body().message))?;
        (manifest, package.wasm, package.fixtures)
    } else if path.is_dir() {
        let built = build(path)?;
        let wasm = std::fs::read(&built.wasm_path)
            .with_context(|| format!("reading {}", built.wasm_path.display()))?;
        let fixtures_dir = path.join("fixtures");
        let fixtures = olivine_plugin_runtime::fixtures::read_dir(&fixtures_dir)
            .with_context(|| format!("reading {}", fixtures_dir.display()))?;
        (built.manifest, wasm, fixtures)
    } else {
        bail!(
            "{} is neither a plugin crate directory nor a .{} package",
            path.display(),
            crate::plugins::package::EXTENSION
        );
    };
    println!(
        "testing {} {} ({}) in the sandbox",
        manifest.id,
        manifest.version,
        manifest.world.name()
    );
    let outcomes = check(manifest, &wasm, &fixtures)?;
    ensure!(
        !outcomes.is_empty(),
        "no fixtures to run: add fixtures/*.json (see the SDK's README)"
    );
    for outcome in &outcomes {
        if outcome.passed {
            println!("ok      {}", outcome.name);
        } else {
            println!("FAILED  {}: {}", outcome.name, outcome.message);
        }
    }
    let failed = failed_fixtures(&outcomes).len();
    let total = outcomes.len();
    // Worded so it is not mistaken for a test runner's "N passed, N failed" summary.
    if failed == 0 {
        println!("{} passed", count(total, "fixture"));
        Ok(())
    } else {
        println!("{} of {total} fixtures passed", total - failed);
        bail!("{failed} of {} failed", count(total, "fixture"))
    }
}

// ---- the admin API ----------------------------------------------------------------------

/// A plugin as `GET /api/v1/admin/plugins/{id}` describes it (the fields shown here).
#[derive(Debug, Deserialize)]
struct PluginInfo {
    id: String,
    world: String,
    #[serde(default)]
    description: String,
    active_version: String,
    previous_version: Option<String>,
    enabled: bool,
    priority: i64,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    #[serde(default)]
    requested_hosts: Vec<String>,
    #[serde(default)]
    granted_hosts: Vec<String>,
    #[serde(default)]
    consecutive_failures: i64,
    disabled_reason: Option<String>,
    #[serde(default)]
    loaded: bool,
    #[serde(default)]
    versions: Vec<PluginVersion>,
}

#[derive(Debug, Deserialize)]
struct PluginVersion {
    version: String,
}

#[derive(Debug, Deserialize)]
struct Decision {
    id: i64,
    version: String,
    call: String,
    outcome: String,
    fuel: i64,
    duration_us: i64,
    created_at: String,
}

/// The error body of every admin API failure (see `crate::error::ErrorBody`).
#[derive(Debug, Deserialize)]
struct ErrorReply {
    error: String,
    message: String,
    #[serde(default)]
    fields: Vec<FieldReply>,
}

#[derive(Debug, Deserialize)]
struct FieldReply {
    field: String,
    message: String,
}

struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    fn new(remote: &Remote) -> anyhow::Result<Client> {
        let base = remote.url.trim().trim_end_matches('/').to_owned();
        ensure!(
            !base.starts_with("https://"),
            "this olivine binary talks plain HTTP only; reach the kernel at an http:// URL \
             (for a remote one, through an SSH tunnel to its port)"
        );
        ensure!(
            base.starts_with("http://") && base.len() > "http://".len(),
            "--url must look like http://host:port, got `{}`",
            remote.url
        );
        let agent = ureq::Agent::config_builder()
            // Error statuses carry the JSON body that says what was wrong.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            // An install compiles the component and runs its fixtures.
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Ok(Client {
            agent,
            base,
            token: admin_token(remote)?,
        })
    }

    /// Sends a request with a JSON body (or none) and decodes the JSON answer; an error
    /// status becomes an error carrying the kernel's message and field errors.
    fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<T> {
        let body = body.map(serde_json::to_vec).transpose()?;
        self.send_bytes(method, path, body)
    }

    fn send_bytes<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("authorization", &auth).call(),
            (method, body) => {
                let request = match method {
                    "POST" => self.agent.post(&url),
                    "PATCH" => self.agent.patch(&url),
                    other => bail!("unsupported method {other}"),
                };
                request
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .send(body.unwrap_or_default())
            }
        };
        let mut response = result.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_error(e))?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &text));
        }
        serde_json::from_str(&text).with_context(|| {
            format!(
                "the kernel at {} answered {method} {path} with unexpected JSON",
                self.base
            )
        })
    }

    fn transport_error(&self, err: ureq::Error) -> anyhow::Error {
        let base = &self.base;
        match err {
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => anyhow!(
                "the kernel is not running at {base} (connection refused); \
                 start it with `olivine serve` or pass --url"
            ),
            ureq::Error::ConnectionFailed => anyhow!(
                "the kernel is not running at {base} (cannot connect); \
                 start it with `olivine serve` or pass --url"
            ),
            ureq::Error::HostNotFound => anyhow!("cannot resolve the host of {base}"),
            ureq::Error::Timeout(_) => anyhow!("the kernel at {base} did not answer in time"),
            other => anyhow!("cannot talk to the kernel at {base}: {other}"),
        }
    }
}

/// The token `olivine serve` uses: given, or read from the file it writes.
fn admin_token(remote: &Remote) -> anyhow::Result<String> {
    if let Some(token) = remote.token.as_deref().map(str::trim)
        && !token.is_empty()
    {
        return Ok(token.to_owned());
    }
    let path = remote.data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_owned()),
        _ => bail!(
            "no admin token: pass --token or set OLIVINE_ADMIN_TOKEN, or point --data-dir \
             (OLIVINE_DATA_DIR) at the kernel's data directory ({} does not exist)",
            path.display()
        ),
    }
}

fn api_error(status: u16, body: &str) -> anyhow::Error {
    let Ok(reply) = serde_json::from_str::<ErrorReply>(body) else {
        let body: String = body.trim().chars().take(500).collect();
        return anyhow!("the kernel answered HTTP {status}: {body}");
    };
    let mut text = format!("the kernel answered HTTP {status} ({})", reply.error);
    // A validation message is its field errors joined; list them one per line instead.
    if reply.fields.is_empty() {
        text.push_str(&format!(": {}", reply.message));
    } else {
        text.push(':');
        for field in &reply.fields {
            text.push_str(&format!("\n  {}: {}", field.field, field.message));
        }
    }
    if status == 401 {
        text.push_str(
            "\n  (check --token / OLIVINE_ADMIN_TOKEN, or the admin-token file in --data-dir)",
        );
    }
    anyhow!(text)
}

/// A plugin id as one URL path segment. Ids are `a-z 0-9 -`: anything else (a `/`, a
/// `?`) is a typo that would address another route, so it is refused here.
fn segment(id: &str) -> anyhow::Result<&str> {
    ensure!(
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "`{id}` is not a plugin id (ids are lowercase letters, digits and hyphens)"
    );
    Ok(id)
}

fn install(client: &Client, path: &Path, activate: bool, enabled: bool) -> anyhow::Result<()> {
    let package_path = if path.is_dir() {
        build_package(path)?
    } else {
        path.to_path_buf()
    };
    let mut upload = PackageUpload::read(&package_path)?;
    upload.activate = activate;
    upload.enabled = enabled;
    let version = Manifest::parse(&upload.manifest)
        .map(|m| m.version.to_string())
        .ok();
    println!("installing {}…", package_path.display());
    let info: PluginInfo =
        client.send_bytes("POST", PLUGINS_PATH, Some(serde_json::to_vec(&upload)?))?;
    match version {
        Some(version) if version != info.active_version => println!(
            "installed {} {version}; the active version stays {}",
            info.id, info.active_version
        ),
        _ => println!("installed {} {}", info.id, info.active_version),
    }
    print_info(&info);
    Ok(())
}

fn list(client: &Client) -> anyhow::Result<()> {
    let plugins: Vec<PluginInfo> = client.send("GET", PLUGINS_PATH, None)?;
    if plugins.is_empty() {
        println!("no plugins installed");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = plugins
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.world.clone(),
                p.active_version.clone(),
                state(p),
                p.priority.to_string(),
            ]
        })
        .collect();
    print_table(&["ID", "WORLD", "VERSION", "STATE", "PRIORITY"], &rows);
    Ok(())
}

fn state(p: &PluginInfo) -> String {
    match (p.enabled, p.loaded) {
        (true, true) => "enabled".to_owned(),
        // Enabled, but the kernel left it out of the active set (see its log): e.g. a
        // required setting is missing.
        (true, false) => "enabled, not loaded".to_owned(),
        (false, _) => "disabled".to_owned(),
    }
}

fn patch(client: &Client, id: &str, body: Value) -> anyhow::Result<()> {
    let info: PluginInfo = client.send(
        "PATCH",
        &format!("{PLUGINS_PATH}/{}", segment(id)?),
        Some(&body),
    )?;
    print_info(&info);
    Ok(())
}

/// The API replaces the whole settings map, so merge the changes into the current one.
fn configure(client: &Client, id: &str, pairs: &[String]) -> anyhow::Result<()> {
    let mut changes = Vec::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("expected key=value, got `{pair}`"))?;
        let key = key.trim();
        ensure!(!key.is_empty(), "expected key=value, got `{pair}`");
        changes.push((key.to_owned(), value.to_owned()));
    }
    let path = format!("{PLUGINS_PATH}/{}", segment(id)?);
    let current: PluginInfo = client.send("GET", &path, None)?;
    let mut settings = current.settings;
    for (key, value) in changes {
        if value.is_empty() {
            settings.remove(&key);
        } else {
            settings.insert(key, value);
        }
    }
    let info: PluginInfo = client.send("PATCH", &path, Some(&json!({ "settings": settings })))?;
    print_info(&info);
    Ok(())
}

fn decisions(client: &Client, id: &str, limit: u32) -> anyhow::Result<()> {
    let records: Vec<Decision> = client.send(
        "GET",
        &format!("{PLUGINS_PATH}/{}/decisions?limit={limit}", segment(id)?),
        None,
    )?;
    if records.is_empty() {
        println!("no decisions recorded for {id}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                d.created_at.clone(),
                d.version.clone(),
                d.call.clone(),
                d.outcome.clone(),
                d.fuel.to_string(),
                d.duration_us.to_string(),
            ]
        })
        .collect();
    print_table(
        &["ID", "AT", "VERSION", "CALL", "OUTCOME", "FUEL", "MICROS"],
        &rows,
    );
    Ok(())
}

fn print_info(p: &PluginInfo) {
    println!("{} {} ({}): {}", p.id, p.active_version, p.world, state(p));
    if !p.description.is_empty() {
        println!("  description: {}", p.description);
    }
    println!("  priority:    {}", p.priority);
    let settings = if p.settings.is_empty() {
        "(defaults)".to_owned()
    } else {
        p.settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  settings:    {settings}");
    if !p.requested_hosts.is_empty() {
        println!(
            "  hosts:       requested {}; granted {}",
            if p.requested_hosts.iter().any(|h| h == "*") {
                "any (the merchant chooses)".to_owned()
            } else {
                p.requested_hosts.join(", ")
            },
            if p.granted_hosts.is_empty() {
                "none".to_owned()
            } else {
                p.granted_hosts.join(", ")
            }
        );
    }
    let versions: Vec<&str> = p.versions.iter().map(|v| v.version.as_str()).collect();
    println!("  versions:    {}", versions.join(", "));
    if let Some(previous) = &p.previous_version {
        println!(
            "  previous:    {previous} (olivine plugin rollback {})",
            p.id
        );
    }
    if let Some(reason) = &p.disabled_reason {
        println!("  disabled:    {reason}");
    }
    if p.consecutive_failures > 0 {
        println!("  failures:    {} in a row", p.consecutive_failures);
    }
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

// ---- templates ----------------------------------------------------------------------------

/// What differs between the worlds' scaffolds.
struct Template {
    description: &'static str,
    sdk_features: &'static str,
    extra_deps: &'static str,
    plugin_toml: &'static str,
    lib_rs: &'static str,
    readme: &'static str,
    fixtures: &'static [(&'static str, &'static str)],
}

fn template(world: World) -> Template {
    match world {
        World::PricingRule => Template {
            description: "Percent off every line with enough units.",
            sdk_features: "",
            extra_deps: "",
            plugin_toml: PRICING_TOML,
            lib_rs: PRICING_RS,
            readme: PRICING_README,
            fixtures: PRICING_FIXTURES,
        },
        World::VariantTaxonomy => Template {
            description: "Attributes, option names and SKUs of one product type.",
            sdk_features: ", features = [\"json\"]",
            extra_deps: "",
            plugin_toml: TAXONOMY_TOML,
            lib_rs: TAXONOMY_RS,
            readme: TAXONOMY_README,
            fixtures: TAXONOMY_FIXTURES,
        },
        World::LoyaltyRule => Template {
            description: "Points per whole currency unit paid.",
            sdk_features: "",
            extra_deps: "",
            plugin_toml: LOYALTY_TOML,
            lib_rs: LOYALTY_RS,
            readme: LOYALTY_README,
            fixtures: LOYALTY_FIXTURES,
        },
        World::PaymentAdapter => Template {
            description: "Authorises, captures, refunds and voids payments through a processor's HTTP API.",
            sdk_features: "",
            extra_deps: "serde_json = \"1\"\n",
            plugin_toml: PAYMENT_TOML,
            lib_rs: PAYMENT_RS,
            readme: HTTP_README,
            fixtures: PAYMENT_FIXTURES,
        },
        World::NotificationChannel => Template {
            description: "Delivers notifications by POSTing them as JSON to an endpoint.",
            sdk_features: "",
            extra_deps: "serde_json = \"1\"\n",
            plugin_toml: NOTIFICATION_TOML,
            lib_rs: NOTIFICATION_RS,
            readme: HTTP_README,
            fixtures: NOTIFICATION_FIXTURES,
        },
    }
}

const CARGO_TOML: &str = r#"[package]
name = "__NAME__"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
description = "Olivine __WORLD__ plugin: __DESCRIPTION__"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
olivine-sdk = { path = __SDK____SDK_FEATURES__ }
__EXTRA_DEPS__
[dev-dependencies]
olivine-sdk = { path = __SDK__, features = ["fixtures"] }

# Standalone: keeps the crate out of any cargo workspace above it. Remove this table to
# make the crate a member of your own workspace.
[workspace]

# Small components load faster; a panic is a trap the kernel reports as a failed call.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true
"#;

const README: &str = r#"# __NAME__

An Olivine `__WORLD__` plugin: __DESCRIPTION__

| file              | what it is                                                        |
|-------------------|-------------------------------------------------------------------|
| `Cargo.toml`      | a `cdylib` crate depending on `olivine-sdk`                        |
| `plugin.toml`     | the manifest: id, version, world, ABI, permissions, settings      |
| `src/lib.rs`      | the plugin, exported with the SDK's macro, and its unit tests     |
| `fixtures/*.json` | self-tests: the kernel runs them in its sandbox before installing |

## Develop

```sh
cargo test                    # unit tests (and fixtures, for pricing, taxonomy and loyalty) natively
olivine plugin test           # builds for wasm32-wasip2 and runs fixtures/ in the kernel's sandbox
olivine plugin build          # the same checks, then writes target/olivine/__NAME__-<version>.olpkg
```

`olivine plugin build` and `test` load the component exactly as the kernel will: a
component that does not implement the `__WORLD__` world of the ABI in `plugin.toml`
fails there, not at install time.

To run the fixtures through the kernel's real host inside `cargo test` as well, give the
dev-dependency the SDK's `host` feature (`features = ["fixtures", "host"]`; the first
build compiles wasmtime, which takes a few minutes) and add:

```rust
#[test]
fn fixtures_through_the_real_host() {
    olivine_sdk::testing::host::check_fixtures(env!("CARGO_MANIFEST_DIR"));
}
```

## Install

```sh
olivine plugin install .      # or: olivine plugin install target/olivine/__NAME__-0.1.0.olpkg
olivine plugin list
olivine plugin configure __NAME__ key=value
```

These talk to the kernel at `OLIVINE_URL` (default `http://127.0.0.1:8080`) with the
admin token from `OLIVINE_ADMIN_TOKEN` or `./data/admin-token`. To ship a new version,
bump `version` in `plugin.toml` (the kernel refuses different content under a version
it already has); `olivine plugin rollback __NAME__` goes back to the previous one.

__WORLD_NOTES__
The SDK's README (`sdk/README.md` in the Olivine repository) documents the helpers, the
fixture format and the rules a plugin runs under (no state between calls, fuel and
memory limits, outbound HTTP only to granted hosts).
"#;

const PRICING_README: &str = r#"## The rule

Every line with at least `min_quantity` units (default 1) gets `percent_off`% (default
10) off, rounded half away from zero in integer minor units. Replace it with your own:
`price` must be a pure function of the cart and the settings, since the kernel calls it
on every cart change.
"#;

const PRICING_TOML: &str = r#"[plugin]
id = "__NAME__"
version = "0.1.0"
world = "pricing-rule"
abi = "0.1"
description = "__DESCRIPTION__"

[permissions]
http = []

[settings.percent_off]
type = "integer"
required = false
default = "10"
description = "Percent off each qualifying line (1-100)."

[settings.min_quantity]
type = "integer"
required = false
default = "1"
description = "Units a line needs for the discount (1-10000)."

[limits]                          # optional overrides
# fuel = 20000000
# memory_mib = 10
"#;

const PRICING_RS: &str = r##"//! __NAME__: a pricing rule. Every line with at least `min_quantity` units gets
//! `percent_off`% off. The kernel calls `price` on every cart change, so keep it a pure
//! function of the cart and the settings.

use olivine_sdk::prelude::*;
use olivine_sdk::settings::Settings;

/// The settings, checked beyond what plugin.toml can express (the kernel has already
/// checked their types and filled in the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub percent_off: u32,
    pub min_quantity: u32,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, String> {
        Ok(Config {
            percent_off: settings::ensure_range(
                "percent_off",
                s.get_parsed_or("percent_off", 10)?,
                1..=100,
            )?,
            min_quantity: settings::ensure_range(
                "min_quantity",
                s.get_parsed_or("min_quantity", 1)?,
                1..=10_000,
            )?,
        })
    }
}

/// The rule as a plain function, easy to unit test.
pub fn price(cart: &Cart, config: Config) -> Result<Vec<Adjustment>, String> {
    let mut out = Vec::new();
    for line in &cart.lines {
        if line.quantity < config.min_quantity {
            continue;
        }
        // Checked integer arithmetic: an overflow is an error, never a wrapped price.
        let amount = money::percent_discount(line.total_minor()?, config.percent_off)?;
        if amount != 0 {
            let reason = format!("{}% off", config.percent_off);
            out.push(Adjustment::line(line.line_id, amount, reason));
        }
    }
    Ok(out)
}

pub struct Plugin;

impl PricingRule for Plugin {
    fn price(cart: &Cart) -> Result<Vec<Adjustment>, String> {
        price(cart, Config::from_settings(&Settings::from_host())?)
    }
}

olivine_sdk::export_pricing_rule!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn cart(quantities: &[u32]) -> Cart {
        Cart {
            currency: "EUR".into(),
            lines: quantities
                .iter()
                .zip(1..)
                .map(|(&quantity, line_id)| CartLine {
                    line_id,
                    product_index: 0,
                    variant_id: 1,
                    quantity,
                    unit_price_minor: 1999,
                    subscription: false,
                })
                .collect(),
            products: vec![],
            customer: None,
        }
    }

    #[test]
    fn only_lines_with_enough_units() {
        let config = Config {
            percent_off: 10,
            min_quantity: 2,
        };
        let out = price(&cart(&[1, 3]), config).unwrap();
        // 10% of 3 x 19.99 = 5.997, rounded to 6.00.
        assert_eq!(out, [Adjustment::line(2, -600, "10% off")]);
    }

    #[test]
    fn settings_out_of_range_are_errors() {
        let err = Config::from_settings(&Settings::from_pairs([("percent_off", "0")])).unwrap_err();
        assert!(err.contains("percent_off"), "{err}");
    }

    /// The same fixtures/*.json files `olivine plugin test` runs in the kernel's sandbox.
    #[test]
    fn fixtures() {
        let ran =
            olivine_sdk::testing::fixtures::check_pricing::<Plugin>(env!("CARGO_MANIFEST_DIR"));
        assert!(ran >= 1);
    }
}
"##;

const PRICING_FIXTURES: &[(&str, &str)] = &[
    (
        "fixtures/lines-with-enough-units.json",
        r#"{
  "description": "10% off the line of 3 units (3 x 19.99 = 59.97, 5.997 rounds to 6.00); the single unit gets nothing",
  "settings": {"percent_off": "10", "min_quantity": "2"},
  "call": "price",
  "input": {
    "currency": "EUR",
    "lines": [
      {"line_id": 1, "product_index": 0, "variant_id": 17, "quantity": 3, "unit_price_minor": 1999, "subscription": false},
      {"line_id": 2, "product_index": 1, "variant_id": 31, "quantity": 1, "unit_price_minor": 999, "subscription": false}
    ],
    "products": [
      {"id": 8, "slug": "magnesium-glycinate", "product_type": "supplement", "tags": [], "categories": ["minerals"]},
      {"id": 12, "slug": "zinc-picolinate", "product_type": "supplement", "tags": [], "categories": ["minerals"]}
    ],
    "customer": null
  },
  "expect": {"ok": [{"line_id": 1, "amount_minor": -600, "reason": "10% off"}]}
}
"#,
    ),
    (
        "fixtures/percent-out-of-range.json",
        r#"{
  "description": "a percent the manifest's integer type allows but the rule refuses is an error (the kernel skips the rule)",
  "settings": {"percent_off": "150"},
  "call": "price",
  "input": {
    "currency": "EUR",
    "lines": [{"line_id": 1, "product_index": 0, "variant_id": 17, "quantity": 1, "unit_price_minor": 1999, "subscription": false}],
    "products": [{"id": 8, "slug": "magnesium-glycinate", "product_type": "supplement", "tags": [], "categories": []}],
    "customer": null
  },
  "expect": {"err": "setting `percent_off` must be between 1 and 100, got 150"}
}
"#,
    ),
];

const TAXONOMY_README: &str = r#"## The taxonomy

It describes supplements (`PRODUCT_TYPE` in `src/lib.rs`; the kernel uses one taxonomy
per product type, the one with the lowest priority number): a required `form` and an
optional `note` attribute, and the option names `count` and `size`. `validate` reports
every problem at once, each under its field path (`attributes.form`,
`variants[0].sku`), and derives a SKU for each variant without one (`MG-60` for
`magnesium-glycinate`, count 60).
"#;

const TAXONOMY_TOML: &str = r#"[plugin]
id = "__NAME__"
version = "0.1.0"
world = "variant-taxonomy"
abi = "0.1"
description = "__DESCRIPTION__"

[permissions]
http = []

[limits]                          # optional overrides
# fuel = 20000000
# memory_mib = 10
"#;

const TAXONOMY_RS: &str = r##"//! __NAME__: a variant taxonomy. It describes one product type's attributes and option
//! names for admin forms, checks products of that type field by field, and derives SKUs
//! for variants that have none.

use olivine_sdk::prelude::*;
use olivine_sdk::product::json::{Object, Value, parse_attributes, serde_json::json};
use olivine_sdk::product::{self, FieldErrors};

/// The product type this taxonomy is for.
pub const PRODUCT_TYPE: ProductType = ProductType::Supplement;
/// Option names variants may use; derived SKUs list their values in name order.
pub const OPTION_NAMES: &[&str] = &["count", "size"];
pub const FORMS: &[&str] = &["capsules", "tablets", "powder"];
const FIELDS: &[&str] = &["form", "note"];

/// Checks the attributes JSON; returns it normalised, or records every problem under
/// `attributes.…`.
pub fn attributes(text: &str, errors: &mut FieldErrors) -> Option<Value> {
    let value = parse_attributes(text, errors)?;
    let attrs = Object::new("attributes", &value, errors)?;
    attrs.deny_unknown(FIELDS, errors);
    let form = attrs.one_of("form", FORMS, errors);
    let note = attrs.optional_string("note", errors);
    Some(json!({ "form": form?, "note": note? }))
}

pub fn validate(product: &ProductInput) -> Result<ValidatedProduct, Vec<FieldError>> {
    let mut errors = FieldErrors::new();
    let attributes = attributes(&product.attributes_json, &mut errors);
    let variants = product::validate_variants(product, OPTION_NAMES, &mut errors);
    match attributes {
        Some(attributes) if errors.is_empty() => Ok(ValidatedProduct {
            attributes_json: attributes.to_string(),
            variants,
        }),
        _ => Err(errors.into_vec()),
    }
}

fn spec(name: &str, description: &str, required: bool, kind: &str) -> AttributeSpec {
    AttributeSpec {
        name: name.into(),
        description: description.into(),
        required,
        kind: kind.into(),
    }
}

pub fn describe() -> TaxonomyInfo {
    TaxonomyInfo {
        product_type: PRODUCT_TYPE,
        attributes: vec![
            spec(
                "form",
                "How it is taken.",
                true,
                &format!("enum:{}", FORMS.join("|")),
            ),
            spec("note", "A note shown on the product page.", false, "string"),
        ],
        option_names: OPTION_NAMES.iter().map(|n| n.to_string()).collect(),
    }
}

pub struct Plugin;

impl VariantTaxonomy for Plugin {
    fn describe() -> TaxonomyInfo {
        describe()
    }

    fn validate(product: &ProductInput) -> Result<ValidatedProduct, Vec<FieldError>> {
        validate(product)
    }
}

olivine_sdk::export_variant_taxonomy!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn product(attributes_json: &str, count: &str) -> ProductInput {
        ProductInput {
            slug: "magnesium-glycinate".into(),
            name: "Magnesium Glycinate".into(),
            attributes_json: attributes_json.into(),
            variants: vec![VariantInput {
                sku: None,
                options: vec![("count".into(), count.into())],
                price_minor: 1999,
                weight_grams: 120,
            }],
        }
    }

    #[test]
    fn derives_skus_and_normalises() {
        let valid = validate(&product(r#"{"form": " capsules "}"#, "60")).unwrap();
        assert_eq!(valid.variants[0].sku, "MG-60");
        assert_eq!(valid.attributes_json, r#"{"form":"capsules","note":""}"#);
    }

    #[test]
    fn reports_every_problem() {
        let errors = validate(&product(r#"{"form": "gummies"}"#, "")).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["attributes.form", "variants[0].options.count"]);
    }

    /// The same fixtures/*.json files `olivine plugin test` runs in the kernel's sandbox.
    #[test]
    fn fixtures() {
        let ran =
            olivine_sdk::testing::fixtures::check_taxonomy::<Plugin>(env!("CARGO_MANIFEST_DIR"));
        assert!(ran >= 1);
    }
}
"##;

const TAXONOMY_FIXTURES: &[(&str, &str)] = &[
    (
        "fixtures/describe.json",
        r#"{
  "description": "describe names the product type, its attributes and option names",
  "settings": {},
  "call": "describe",
  "input": null,
  "expect": {
    "ok": {
      "product_type": "supplement",
      "attributes": [
        {"name": "form", "description": "How it is taken.", "required": true, "kind": "enum:capsules|tablets|powder"},
        {"name": "note", "description": "A note shown on the product page.", "required": false, "kind": "string"}
      ],
      "option_names": ["count", "size"]
    }
  }
}
"#,
    ),
    (
        "fixtures/derives-skus.json",
        r#"{
  "description": "variants without a SKU get the slug's initials and their option values",
  "settings": {},
  "call": "validate",
  "input": {
    "slug": "magnesium-glycinate",
    "name": "Magnesium Glycinate",
    "attributes_json": "{\"form\": \"capsules\"}",
    "variants": [
      {"sku": null, "options": [["count", "60"]], "price_minor": 1999, "weight_grams": 120},
      {"sku": "MG-TRIAL", "options": [["count", "10"]], "price_minor": 499, "weight_grams": 30}
    ]
  },
  "expect": {"ok_skus": ["MG-60", "MG-TRIAL"]}
}
"#,
    ),
    (
        "fixtures/invalid-attributes.json",
        r#"{
  "description": "every problem is reported under its field (only the fields are compared)",
  "settings": {},
  "call": "validate",
  "input": {
    "slug": "magnesium-glycinate",
    "name": "Magnesium Glycinate",
    "attributes_json": "{\"form\": \"gummies\", \"colour\": \"red\"}",
    "variants": [
      {"sku": null, "options": [["flavour", "lemon"]], "price_minor": 1999, "weight_grams": 120}
    ]
  },
  "expect": {
    "err": [
      {"field": "attributes.colour", "message": "is not a known field; expected one of form, note"},
      {"field": "attributes.form", "message": "`gummies` is not one of capsules, tablets, powder"},
      {"field": "variants[0].options.flavour", "message": "unknown option `flavour`; use count, size"}
    ]
  }
}
"#,
    ),
];

const LOYALTY_README: &str = r#"## The rule

`order.paid` earns `points_per_unit` points (default 1) per whole currency unit paid
(EUR 49.99 earns 49); other events earn nothing. The kernel de-duplicates ledger
entries by the event's id, so the rule need not.
"#;

const LOYALTY_TOML: &str = r#"[plugin]
id = "__NAME__"
version = "0.1.0"
world = "loyalty-rule"
abi = "0.1"
description = "__DESCRIPTION__"

[permissions]
http = []

[settings.points_per_unit]
type = "integer"
required = false
default = "1"
description = "Points per whole currency unit paid on order.paid (0-1000)."

[limits]                          # optional overrides
# fuel = 20000000
# memory_mib = 10
"#;

const LOYALTY_RS: &str = r##"//! __NAME__: a loyalty rule. `order.paid` earns `points_per_unit` points per whole
//! currency unit paid; other events earn nothing.

use olivine_sdk::prelude::*;
use olivine_sdk::settings::Settings;

pub fn points_per_unit(s: &Settings) -> Result<i64, String> {
    settings::ensure_range(
        "points_per_unit",
        s.get_parsed_or("points_per_unit", 1)?,
        0..=1_000,
    )
}

/// The rule as a plain function, easy to unit test.
pub fn on_event(event: &LoyaltyEvent, points_per_unit: i64) -> Result<Vec<PointsEntry>, String> {
    if event.kind != "order.paid" {
        return Ok(Vec::new());
    }
    let amount = event
        .amount
        .as_ref()
        .ok_or_else(|| format!("order.paid event {} has no amount", event.event_id))?;
    let points = amount
        .whole_units()
        .max(0)
        .checked_mul(points_per_unit)
        .ok_or_else(|| format!("points for {amount} overflow"))?;
    if points == 0 {
        return Ok(Vec::new());
    }
    Ok(vec![PointsEntry::new(
        points,
        format!("Order paid: {amount}"),
    )])
}

pub struct Plugin;

impl LoyaltyRule for Plugin {
    fn on_event(event: &LoyaltyEvent) -> Result<Vec<PointsEntry>, String> {
        on_event(event, points_per_unit(&Settings::from_host())?)
    }
}

olivine_sdk::export_loyalty_rule!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn paid(amount_minor: i64) -> LoyaltyEvent {
        LoyaltyEvent {
            kind: "order.paid".into(),
            customer: CustomerRef {
                pseudonym: "c-1".into(),
                segments: vec![],
            },
            amount: Some(Money::new(amount_minor, "EUR")),
            count: None,
            event_id: "order-1-paid".into(),
        }
    }

    #[test]
    fn whole_units_earn_points() {
        assert_eq!(
            on_event(&paid(4999), 1).unwrap(),
            [PointsEntry::new(49, "Order paid: €49.99")]
        );
        assert!(on_event(&paid(99), 1).unwrap().is_empty());
    }

    /// The same fixtures/*.json files `olivine plugin test` runs in the kernel's sandbox.
    #[test]
    fn fixtures() {
        let ran =
            olivine_sdk::testing::fixtures::check_loyalty::<Plugin>(env!("CARGO_MANIFEST_DIR"));
        assert!(ran >= 1);
    }
}
"##;

const LOYALTY_FIXTURES: &[(&str, &str)] = &[
    (
        "fixtures/order-paid.json",
        r#"{
  "description": "2 points per whole euro paid: EUR 49.99 earns 98",
  "settings": {"points_per_unit": "2"},
  "call": "on_event",
  "input": {
    "kind": "order.paid",
    "customer": {"pseudonym": "c-8f2a", "segments": []},
    "amount": {"amount_minor": 4999, "currency": "EUR"},
    "count": null,
    "event_id": "order-1001-paid"
  },
  "expect": {"ok": [{"points": 98, "reason": "Order paid: €49.99"}]}
}
"#,
    ),
    (
        "fixtures/other-event-ignored.json",
        r#"{
  "description": "events the rule does not know earn nothing",
  "settings": {},
  "call": "on_event",
  "input": {
    "kind": "review.written",
    "customer": {"pseudonym": "c-8f2a", "segments": []},
    "amount": null,
    "count": null,
    "event_id": "review-5"
  },
  "expect": {"ok": []}
}
"#,
    ),
];

const HTTP_README: &str = r#"## Outbound HTTP

The plugin reaches its service through the host's HTTP import, and only the hosts
listed under `[permissions] http` in `plugin.toml` that the merchant granted:

```sh
olivine plugin grant-hosts __NAME__ <host>
olivine plugin configure __NAME__ <setting>=<value>
```

Replace the example host in `plugin.toml` (and the URL settings) with your service's.

## Fixtures

The kernel's fixture runner has no calls for this world yet (it knows `price`,
`validate`, `describe` and `on_event`), so `fixtures/missing-settings.json` only checks,
in the sandbox, that the manifest's settings are enforced: without its required
setting the kernel will not run the plugin. The behaviour itself is covered by the unit
tests in `src/lib.rs`, which answer the plugin's HTTP requests with
`olivine_sdk::testing::mock_http`.
"#;

const PAYMENT_TOML: &str = r#"[plugin]
id = "__NAME__"
version = "0.1.0"
world = "payment-adapter"
abi = "0.1"
description = "__DESCRIPTION__"

[permissions]
# The processor's host (host or host:port). The kernel lets the plugin reach only hosts
# declared here and granted by the merchant (`olivine plugin grant-hosts`).
http = ["payments.example.com"]

[settings.api_base]
type = "string"
required = true
description = "Base URL of the processor's API, e.g. https://payments.example.com/v1; its host must be listed under [permissions] http."

[settings.api_key]
type = "string"
required = false
description = "Sent as a bearer token when set."

[limits]                          # optional overrides
# fuel = 20000000
# memory_mib = 10
"#;

const PAYMENT_RS: &str = r##"//! __NAME__: a payment adapter. Each operation POSTs JSON to `<api_base>/<operation>`
//! with the kernel's idempotency key as a header, through the host's HTTP import. The
//! processor answers `{"status": "approved" | "declined" | "pending", "reference": "…",
//! "message": "…"}`; adapt `request` and `outcome` to your processor's API. The kernel
//! passes a processor token, never card data.

use olivine_sdk::http::{self, HttpError, Request, Response};
use olivine_sdk::prelude::*;
use olivine_sdk::settings::Settings;
use serde_json::{Value, json};

fn money_json(m: &Money) -> Value {
    json!({ "amount_minor": m.amount_minor, "currency": m.currency })
}

/// The request for one operation.
pub fn request(
    settings: &Settings,
    operation: &str,
    idempotency_key: &str,
    body: &Value,
) -> Result<Request, PaymentError> {
    let base = settings
        .required("api_base")
        .map_err(PaymentError::Invalid)?;
    let mut request = Request::post(format!("{}/{operation}", base.trim_end_matches('/')))
        .header("idempotency-key", idempotency_key)
        .json(body.to_string());
    if let Some(key) = settings
        .get("api_key")
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    Ok(request)
}

/// Maps the processor's answer to a result. Retryable means trying again later with the
/// same idempotency key may succeed.
pub fn outcome(result: Result<Response, HttpError>) -> Result<PaymentResult, PaymentError> {
    let response = match result {
        Ok(response) => response,
        Err(HttpError::Denied(why)) => {
            return Err(PaymentError::Invalid(format!(
                "the host denied the request: {why}"
            )));
        }
        Err(HttpError::Timeout) => {
            return Err(PaymentError::Retryable("the processor timed out".into()));
        }
        Err(HttpError::Failed(why)) => {
            return Err(PaymentError::Retryable(format!(
                "the processor is unreachable: {why}"
            )));
        }
    };
    if response.is_server_error() || response.status == 429 {
        return Err(PaymentError::Retryable(format!(
            "the processor answered {}",
            response.status
        )));
    }
    if response.status == 402 {
        return Err(PaymentError::Declined(response.text()));
    }
    if !response.is_success() {
        return Err(PaymentError::Invalid(format!(
            "the processor answered {}: {}",
            response.status,
            response.text()
        )));
    }
    let reply: Value = serde_json::from_slice(&response.body)
        .map_err(|e| PaymentError::Retryable(format!("the processor's answer is not JSON: {e}")))?;
    let text = |key: &str| {
        reply
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let status = match reply.get("status").and_then(Value::as_str) {
        Some("approved") => PaymentStatus::Approved,
        Some("declined") => PaymentStatus::Declined,
        Some("pending") => PaymentStatus::Pending,
        other => {
            return Err(PaymentError::Retryable(format!(
                "unknown payment status {other:?}"
            )));
        }
    };
    Ok(PaymentResult {
        status,
        processor_reference: text("reference"),
        message: text("message"),
    })
}

fn operation(name: &str, op: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
    let body = json!({
        "order_id": op.order_id,
        "reference": op.processor_reference,
        "amount": op.amount.as_ref().map(money_json),
    });
    let request = request(&Settings::from_host(), name, &op.idempotency_key, &body)?;
    outcome(http::send(&request))
}

pub struct Plugin;

impl PaymentAdapter for Plugin {
    fn authorize(r: &AuthorizeRequest) -> Result<PaymentResult, PaymentError> {
        let body = json!({
            "order_id": r.order_id,
            "amount": money_json(&r.amount),
            "payment_token": r.payment_token,
        });
        let request = request(
            &Settings::from_host(),
            "authorize",
            &r.idempotency_key,
            &body,
        )?;
        outcome(http::send(&request))
    }

    fn capture(op: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        operation("capture", op)
    }

    fn refund(op: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        operation("refund", op)
    }

    fn void(op: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        operation("void", op)
    }
}

olivine_sdk::export_payment_adapter!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use olivine_sdk::testing;

    fn authorize_request() -> AuthorizeRequest {
        AuthorizeRequest {
            order_id: "1001".into(),
            idempotency_key: "order-1001-authorize".into(),
            amount: Money::new(4999, "EUR"),
            payment_token: "tok_visa".into(),
            customer: None,
        }
    }

    fn authorize_with(response: Response) -> Result<PaymentResult, PaymentError> {
        testing::clear();
        testing::set_settings([("api_base", "https://payments.example.com/v1/")]);
        testing::mock_http(move |_| Ok(response.clone()));
        <Plugin as PaymentAdapter>::authorize(&authorize_request())
    }

    #[test]
    fn approved_with_the_processor_reference() {
        let reply = r#"{"status": "approved", "reference": "ch_1", "message": "ok"}"#;
        let result = authorize_with(Response::new(200).with_body(reply)).unwrap();
        assert_eq!(result.status, PaymentStatus::Approved);
        assert_eq!(result.processor_reference, "ch_1");
        let sent = testing::sent_requests();
        assert_eq!(sent[0].url, "https://payments.example.com/v1/authorize");
        assert_eq!(
            sent[0].header_value("idempotency-key"),
            Some("order-1001-authorize")
        );
        let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
        assert_eq!(body["amount"]["amount_minor"], 4999);
        testing::clear();
    }

    #[test]
    fn declines_retries_and_refusals() {
        assert!(matches!(
            authorize_with(Response::new(402)),
            Err(PaymentError::Declined(_))
        ));
        assert!(matches!(
            authorize_with(Response::new(503)),
            Err(PaymentError::Retryable(_))
        ));
        assert!(matches!(
            authorize_with(Response::new(400)),
            Err(PaymentError::Invalid(_))
        ));
        assert!(matches!(
            outcome(Err(HttpError::Denied("not granted".into()))),
            Err(PaymentError::Invalid(_))
        ));
        testing::clear();
    }

    #[test]
    fn without_api_base_nothing_is_sent() {
        testing::clear();
        let result = <Plugin as PaymentAdapter>::authorize(&authorize_request());
        assert!(matches!(result, Err(PaymentError::Invalid(_))));
        assert!(testing::sent_requests().is_empty());
    }
}
"##;

const PAYMENT_FIXTURES: &[(&str, &str)] = &[(
    "fixtures/missing-settings.json",
    r#"{
  "description": "the kernel refuses to run the adapter until api_base is set (olivine plugin configure)",
  "settings": {},
  "call": "authorize",
  "input": null,
  "expect": {"settings_err": ["settings.api_base"]}
}
"#,
)];

const NOTIFICATION_TOML: &str = r#"[plugin]
id = "__NAME__"
version = "0.1.0"
world = "notification-channel"
abi = "0.1"
description = "__DESCRIPTION__"

[permissions]
# The endpoint's host (host or host:port). The kernel lets the plugin reach only hosts
# declared here and granted by the merchant (`olivine plugin grant-hosts`).
http = ["notify.example.com"]

[settings.endpoint]
type = "string"
required = true
description = "The URL notifications are POSTed to (http:// or https://); its host must be listed under [permissions] http."

[limits]                          # optional overrides
# fuel = 20000000
# memory_mib = 10
"#;

const NOTIFICATION_RS: &str = r##"//! __NAME__: a notification channel. Each notification is POSTed as JSON to the
//! `endpoint` setting through the host's HTTP import. 2xx is delivered; 5xx, 429,
//! timeouts and transport failures are retried by the kernel; anything else is
//! permanent.

use olivine_sdk::http::{self, HttpError, Request, Response};
use olivine_sdk::prelude::*;
use olivine_sdk::settings::Settings;
use serde_json::{Value, json};

pub fn request(settings: &Settings, n: &Notification) -> Result<Request, DeliveryError> {
    let endpoint = settings
        .required("endpoint")
        .map_err(DeliveryError::Permanent)?;
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(DeliveryError::Permanent(format!(
            "setting `endpoint` must be an http(s) URL, got `{endpoint}`"
        )));
    }
    // `data_json` is embedded as JSON when it parses, as a string otherwise.
    let data =
        serde_json::from_str(&n.data_json).unwrap_or_else(|_| Value::String(n.data_json.clone()));
    let body = json!({
        "topic": n.topic,
        "recipient": n.recipient,
        "subject": n.subject,
        "body": n.body,
        "data": data,
    });
    Ok(Request::post(endpoint)
        .header("x-olivine-topic", n.topic.clone())
        // The same for every retry of one notification: the receiver can de-duplicate.
        .header("idempotency-key", n.idempotency_key.clone())
        .json(body.to_string()))
}

pub fn outcome(result: Result<Response, HttpError>) -> Result<DeliveryReceipt, DeliveryError> {
    match result {
        Ok(response) if response.is_success() => Ok(DeliveryReceipt {
            provider_reference: response
                .header("x-request-id")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("http-{}", response.status)),
        }),
        Ok(response) if response.is_server_error() || response.status == 429 => Err(
            DeliveryError::Retryable(format!("the endpoint answered {}", response.status)),
        ),
        Ok(response) => Err(DeliveryError::Permanent(format!(
            "the endpoint answered {}",
            response.status
        ))),
        Err(HttpError::Denied(why)) => Err(DeliveryError::Permanent(format!(
            "the host denied the request: {why}"
        ))),
        Err(HttpError::Timeout) => Err(DeliveryError::Retryable("the endpoint timed out".into())),
        Err(HttpError::Failed(why)) => Err(DeliveryError::Retryable(format!(
            "the endpoint is unreachable: {why}"
        ))),
    }
}

pub struct Plugin;

impl NotificationChannel for Plugin {
    fn deliver(notification: &Notification) -> Result<DeliveryReceipt, DeliveryError> {
        let request = request(&Settings::from_host(), notification)?;
        outcome(http::send(&request))
    }
}

olivine_sdk::export_notification_channel!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use olivine_sdk::testing;

    fn notification() -> Notification {
        Notification {
            topic: "order.confirmed".into(),
            idempotency_key: "order-1001-confirmed".into(),
            recipient: "customer-42".into(),
            subject: "Order 1001 confirmed".into(),
            body: "Thanks!".into(),
            data_json: r#"{"order_id": "1001"}"#.into(),
        }
    }

    fn deliver_with(response: Response) -> Result<DeliveryReceipt, DeliveryError> {
        testing::clear();
        testing::set_settings([("endpoint", "https://notify.example.com/olivine")]);
        testing::mock_http(move |_| Ok(response.clone()));
        <Plugin as NotificationChannel>::deliver(&notification())
    }

    #[test]
    fn posts_json() {
        let receipt =
            deliver_with(Response::new(200).with_header("X-Request-Id", "req-1")).unwrap();
        assert_eq!(receipt.provider_reference, "req-1");
        let sent = testing::sent_requests();
        assert_eq!(sent[0].url, "https://notify.example.com/olivine");
        assert_eq!(
            sent[0].header_value("idempotency-key"),
            Some("order-1001-confirmed")
        );
        let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
        assert_eq!(body["data"]["order_id"], "1001");
        testing::clear();
    }

    #[test]
    fn retryable_and_permanent_failures() {
        assert!(matches!(
            deliver_with(Response::new(503)),
            Err(DeliveryError::Retryable(_))
        ));
        assert!(matches!(
            deliver_with(Response::new(404)),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(matches!(
            outcome(Err(HttpError::Timeout)),
            Err(DeliveryError::Retryable(_))
        ));
        testing::clear();
    }

    #[test]
    fn without_an_endpoint_nothing_is_sent() {
        testing::clear();
        let result = <Plugin as NotificationChannel>::deliver(&notification());
        assert!(matches!(result, Err(DeliveryError::Permanent(_))));
        assert!(testing::sent_requests().is_empty());
    }
}
"##;

const NOTIFICATION_FIXTURES: &[(&str, &str)] = &[(
    "fixtures/missing-settings.json",
    r#"{
  "description": "the kernel refuses to run the channel until endpoint is set (olivine plugin configure)",
  "settings": {},
  "call": "deliver",
  "input": null,
  "expect": {"settings_err": ["settings.endpoint"]}
}
"#,
)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("ten-percent-off").is_ok());
        assert!(check_name("a1-x").is_ok());
        for bad in [
            "ab", "Ten", "1abc", "-abc", "ten_off", "tén", "crate", "test", "",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn every_world_has_a_complete_scaffold() {
        for world in World::ALL {
            let files = scaffold(world, "my-plugin", "/sdk \"quoted\"");
            let text = |name: &str| {
                files
                    .iter()
                    .find(|(path, _)| *path == name)
                    .map(|(_, text)| text.clone())
                    .unwrap_or_else(|| panic!("{} has no {name}", world.name()))
            };
            let all: String = files.iter().map(|(_, t)| t.as_str()).collect();
            assert!(
                !all.contains("__"),
                "{}: unfilled placeholder",
                world.name()
            );
            let manifest = Manifest::parse(&text("plugin.toml")).unwrap();
            assert_eq!((manifest.id.as_str(), manifest.world), ("my-plugin", world));
            assert!(text("Cargo.toml").contains(r#"path = "/sdk \"quoted\"""#));
            assert!(text("src/lib.rs").contains("impl "));
            let fixtures: Vec<_> = files
                .iter()
                .filter(|(path, _)| path.starts_with("fixtures/"))
                .collect();
            assert!(!fixtures.is_empty(), "{}", world.name());
            for (path, json) in fixtures {
                let fixture: olivine_plugin_runtime::fixtures::Fixture =
                    serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}: {e}"));
                assert!(!fixture.description.is_empty());
            }
        }
    }
}
