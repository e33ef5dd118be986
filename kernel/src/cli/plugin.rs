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
    /// Show a plugin's recent decisions, newest first, with what each answered.
    Decisions {
        id: String,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only the decisions on this input (the hash a quote was recorded with).
        #[arg(long)]
        input_hash: Option<String>,
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
    /// A staff API token with the plugins permissions. Unset: read
    /// `<data dir>/admin-token`, the owner's token `olivine serve` writes.
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
        PluginCommand::Decisions {
            id,
            limit,
            input_hash,
            remote,
        } => decisions(&Client::new(&remote)?, &id, limit, input_hash.as_deref()),
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
    /// A secret setting's value is `null`: the API never answers it.
    #[serde(default)]
    settings: BTreeMap<String, Option<String>>,
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
    input_hash: String,
    outcome: String,
    fuel: i64,
    duration_us: i64,
    created_at: String,
    /// What the plugin answered, in short (`plugins::api::DecisionRecord::detail`).
    #[serde(default)]
    detail: Option<Value>,
}

/// A decision's answer on one line: its JSON, cut at `ANSWER_CHARS` characters.
fn answer_cell(detail: Option<&Value>) -> String {
    const ANSWER_CHARS: usize = 100;
    let Some(detail) = detail else {
        return "-".to_owned();
    };
    let text = detail.to_string();
    if text.chars().count() <= ANSWER_CHARS {
        text
    } else {
        let cut: String = text.chars().take(ANSWER_CHARS - 1).collect();
        format!("{cut}…")
    }
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

/// The API replaces the whole settings map, so merge the changes into the current one
/// (a secret comes back as `null`, which keeps it).
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
            settings.insert(key, Some(value));
        }
    }
    let info: PluginInfo = client.send("PATCH", &path, Some(&json!({ "settings": settings })))?;
    print_info(&info);
    Ok(())
}

fn decisions(
    client: &Client,
    id: &str,
    limit: u32,
    input_hash: Option<&str>,
) -> anyhow::Result<()> {
    let mut path = format!("{PLUGINS_PATH}/{}/decisions?limit={limit}", segment(id)?);
    if let Some(hash) = input_hash {
        ensure!(
            !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "`{hash}` is not an input hash (the hex digits a decision shows)"
        );
        path.push_str("&input_hash=");
        path.push_str(&hash.to_ascii_lowercase());
    }
    let records: Vec<Decision> = client.send("GET", &path, None)?;
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
                d.input_hash.chars().take(12).collect(),
                d.outcome.clone(),
                d.fuel.to_string(),
                d.duration_us.to_string(),
                answer_cell(d.detail.as_ref()),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "AT", "VERSION", "CALL", "INPUT", "OUTCOME", "FUEL", "MICROS", "ANSWER",
        ],
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
            .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("(secret, set)")))
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

const CARGO_TOML: &str = include_str!("templates/Cargo.toml.tmpl");

const README: &str = include_str!("templates/README.md.tmpl");

const PRICING_README: &str = include_str!("templates/pricing-rule/README.md.tmpl");

const PRICING_TOML: &str = include_str!("templates/pricing-rule/plugin.toml.tmpl");

const PRICING_RS: &str = include_str!("templates/pricing-rule/lib.rs.tmpl");

const PRICING_FIXTURES: &[(&str, &str)] = &[
    (
        "fixtures/lines-with-enough-units.json",
        include_str!("templates/pricing-rule/fixtures/lines-with-enough-units.json"),
    ),
    (
        "fixtures/percent-out-of-range.json",
        include_str!("templates/pricing-rule/fixtures/percent-out-of-range.json"),
    ),
];

const TAXONOMY_README: &str = include_str!("templates/variant-taxonomy/README.md.tmpl");

const TAXONOMY_TOML: &str = include_str!("templates/variant-taxonomy/plugin.toml.tmpl");

const TAXONOMY_RS: &str = include_str!("templates/variant-taxonomy/lib.rs.tmpl");

const TAXONOMY_FIXTURES: &[(&str, &str)] = &[
    (
        "fixtures/describe.json",
        include_str!("templates/variant-taxonomy/fixtures/describe.json"),
    ),
    (
        "fixtures/derives-skus.json",
        include_str!("templates/variant-taxonomy/fixtures/derives-skus.json"),
    ),
    (
        "fixtures/invalid-attributes.json",
        include_str!("templates/variant-taxonomy/fixtures/invalid-attributes.json"),
    ),
];

const LOYALTY_README: &str = include_str!("templates/loyalty-rule/README.md.tmpl");

const LOYALTY_TOML: &str = include_str!("templates/loyalty-rule/plugin.toml.tmpl");

const LOYALTY_RS: &str = include_str!("templates/loyalty-rule/lib.rs.tmpl");

const LOYALTY_FIXTURES: &[(&str, &str)] = &[
    (
        "fixtures/order-paid.json",
        include_str!("templates/loyalty-rule/fixtures/order-paid.json"),
    ),
    (
        "fixtures/other-event-ignored.json",
        include_str!("templates/loyalty-rule/fixtures/other-event-ignored.json"),
    ),
];

const HTTP_README: &str = include_str!("templates/http-README.md.tmpl");

const PAYMENT_TOML: &str = include_str!("templates/payment-adapter/plugin.toml.tmpl");

const PAYMENT_RS: &str = include_str!("templates/payment-adapter/lib.rs.tmpl");

const PAYMENT_FIXTURES: &[(&str, &str)] = &[(
    "fixtures/missing-settings.json",
    include_str!("templates/payment-adapter/fixtures/missing-settings.json"),
)];

const NOTIFICATION_TOML: &str = include_str!("templates/notification-channel/plugin.toml.tmpl");

const NOTIFICATION_RS: &str = include_str!("templates/notification-channel/lib.rs.tmpl");

const NOTIFICATION_FIXTURES: &[(&str, &str)] = &[(
    "fixtures/missing-settings.json",
    include_str!("templates/notification-channel/fixtures/missing-settings.json"),
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

    #[test]
    fn a_decisions_answer_fits_one_line() {
        assert_eq!(answer_cell(None), "-");
        let short = json!({"status": "declined", "hard": true});
        assert_eq!(answer_cell(Some(&short)), short.to_string());
        let adjustment = json!({"line_id": 1, "amount_minor": -250, "reason": "é".repeat(40)});
        let long = json!({"currency": "EUR", "adjustments": vec![adjustment; 5]});
        let cell = answer_cell(Some(&long));
        assert_eq!(cell.chars().count(), 100);
        assert!(cell.ends_with('…'), "{cell}");
        assert!(cell.starts_with("{\"adjustments\":[{"), "{cell}");
    }
}
