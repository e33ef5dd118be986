//! The plugin registry: installed plugins live in the database (binaries by content
//! hash, versions, installation state), and the active set is an immutable snapshot
//! behind an atomic pointer. Every change — install, activate, roll back, enable,
//! disable, configure, reorder, grant — commits with its event and then swaps in a new
//! snapshot; a call that already holds the old snapshot finishes on it.

pub mod api;
pub mod bundled;
pub mod decisions;
pub mod notifications;
pub mod package;
pub mod payments;
pub mod pricing;
pub mod taxonomy;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use olivine_plugin_runtime::bindings::types;
use olivine_plugin_runtime::{CallError, HttpGrant, Manifest, Plugin, Runtime, World};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::bus::Bus;
use crate::catalog::model::ProductType;
use crate::error::{Error, FieldError, Result};
use crate::store::Db;

/// Consecutive failures after which a plugin is disabled automatically.
pub const AUTO_DISABLE_AFTER: i64 = 5;

/// A plugin in the active set, with the settings it runs with.
pub struct ActivePlugin {
    pub id: String,
    pub version: String,
    pub priority: i64,
    pub plugin: Arc<Plugin>,
    pub settings: Arc<BTreeMap<String, String>>,
}

/// The active plugin set at one moment. Immutable; replaced as a whole.
#[derive(Default)]
pub struct Snapshot {
    /// In priority order (lowest number first), then id.
    pub pricing: Vec<Arc<ActivePlugin>>,
    pub taxonomies: HashMap<ProductType, Arc<ActivePlugin>>,
    /// The attributes each active taxonomy declares (its `describe`), for the admin's
    /// product forms.
    pub taxonomy_attributes: HashMap<ProductType, Arc<[taxonomy::AttributeField]>>,
    pub loyalty: Vec<Arc<ActivePlugin>>,
    pub payments: Vec<Arc<ActivePlugin>>,
    pub notifications: Vec<Arc<ActivePlugin>>,
}

/// What a package brings: its manifest, its component and its self-test fixtures.
pub struct Package {
    pub manifest_toml: String,
    pub wasm: Vec<u8>,
    pub fixtures: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PluginVersion {
    pub version: String,
    pub hash: String,
    pub installed_at: String,
    pub installed_by: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PluginInfo {
    pub id: String,
    pub world: String,
    pub description: String,
    pub active_version: String,
    pub previous_version: Option<String>,
    pub enabled: bool,
    /// Pricing rules run in ascending priority.
    pub priority: i64,
    /// The settings the merchant set. A secret one's value (`secret = true` in the
    /// manifest: a credential) is never answered: it is `null`, and `secrets` says it
    /// is set.
    pub settings: BTreeMap<String, Option<String>>,
    /// Every secret setting the active version declares, and whether it has a value.
    pub secrets: BTreeMap<String, SecretSetting>,
    /// Hosts the manifest asks for.
    pub requested_hosts: Vec<String>,
    /// Hosts the merchant granted (a subset of the requested ones).
    pub granted_hosts: Vec<String>,
    pub consecutive_failures: i64,
    pub disabled_reason: Option<String>,
    /// Whether the active version is loaded in this node's snapshot.
    pub loaded: bool,
    pub versions: Vec<PluginVersion>,
}

/// A secret setting as the admin API shows it: whether it has a value, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct SecretSetting {
    pub set: bool,
}

/// A change to an installed plugin; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginPatch {
    pub enabled: Option<bool>,
    /// 0 to 1,000,000.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub priority: Option<i64>,
    /// Replaces the settings; checked against the manifest's schema. A setting left out
    /// is removed; one given as `null` keeps its stored value, so the settings `GET`
    /// answers (a secret's `null` included) can be sent back with changes.
    pub settings: Option<BTreeMap<String, Option<String>>>,
    /// Hosts granted for outbound HTTP; each must be declared by the manifest.
    pub granted_hosts: Option<Vec<String>>,
}

type LoadKey = (String, String, String, Vec<String>);

pub struct Plugins {
    runtime: Arc<Runtime>,
    db: Db,
    bus: Bus,
    snapshot: ArcSwap<Snapshot>,
    /// Loaded plugins by (id, version, content hash, granted hosts): a reload does not
    /// recompile. The manifest belongs to the version, so one binary under two versions
    /// is two entries.
    loaded: Mutex<HashMap<LoadKey, Arc<Plugin>>>,
    /// Serialises reloads so an older one cannot overwrite a newer snapshot.
    reloading: tokio::sync::Mutex<()>,
    /// Consecutive failures per plugin, kept in memory so a successful call writes
    /// nothing; failures are also persisted.
    failures: Mutex<HashMap<String, i64>>,
    pub decisions: decisions::DecisionLog,
    /// The store's pricing mode, which pricing rules read as the setting
    /// `store.prices_include_tax` (kept current by the `settings.updated` event).
    prices_include_tax: std::sync::atomic::AtomicBool,
}

fn manifest_errors(problems: Vec<olivine_plugin_runtime::manifest::ManifestError>) -> Error {
    Error::Validation(
        problems
            .into_iter()
            .map(|p| FieldError::new(format!("manifest.{}", p.field), p.message))
            .collect(),
    )
}

fn settings_errors(problems: Vec<olivine_plugin_runtime::manifest::ManifestError>) -> Error {
    Error::Validation(
        problems
            .into_iter()
            .map(|p| FieldError::new(p.field, p.message))
            .collect(),
    )
}

fn blocking_error(err: tokio::task::JoinError) -> Error {
    Error::Internal(anyhow::anyhow!("plugin task failed: {err}"))
}

pub fn product_type_of(t: types::ProductType) -> ProductType {
    match t {
        types::ProductType::Supplement => ProductType::Supplement,
        types::ProductType::Skincare => ProductType::Skincare,
        types::ProductType::Bundle => ProductType::Bundle,
    }
}

struct InstallationRow {
    plugin_id: String,
    world: String,
    active_version: String,
    previous_version: Option<String>,
    enabled: bool,
    priority: i64,
    settings: BTreeMap<String, String>,
    granted_hosts: Vec<String>,
    consecutive_failures: i64,
    disabled_reason: Option<String>,
}

const INSTALLATION_COLUMNS: &str = "plugin_id, world, active_version, previous_version, enabled, priority, settings, granted_hosts, consecutive_failures, disabled_reason";

fn installation(row: &sqlx::any::AnyRow) -> Result<InstallationRow> {
    let settings: String = row.try_get(6)?;
    let hosts: String = row.try_get(7)?;
    Ok(InstallationRow {
        plugin_id: row.try_get(0)?,
        world: row.try_get(1)?,
        active_version: row.try_get(2)?,
        previous_version: row.try_get(3)?,
        enabled: row.try_get::<i64, _>(4)? != 0,
        priority: row.try_get(5)?,
        settings: serde_json::from_str(&settings).unwrap_or_default(),
        granted_hosts: serde_json::from_str(&hosts).unwrap_or_default(),
        consecutive_failures: row.try_get(8)?,
        disabled_reason: row.try_get(9)?,
    })
}

impl InstallationRow {
    /// The installation as audit entries show it. Setting values are shown as
    /// fingerprints, never in clear: they may be credentials (a payment adapter's API
    /// key, a webhook URL with a token), and the audit log can never be erased.
    fn audit_state(&self) -> serde_json::Value {
        let settings: BTreeMap<&str, String> = self
            .settings
            .iter()
            .map(|(key, value)| (key.as_str(), setting_fingerprint(value)))
            .collect();
        serde_json::json!({
            "world": self.world,
            "active_version": self.active_version,
            "previous_version": self.previous_version,
            "enabled": self.enabled,
            "priority": self.priority,
            "settings": settings,
            "granted_hosts": self.granted_hosts,
            "consecutive_failures": self.consecutive_failures,
            "disabled_reason": self.disabled_reason,
        })
    }
}

/// The settings a patch gives, with those given as `null` taken from `stored` (a secret
/// the merchant does not see, sent back as the API answered it); one given as `null`
/// that has no stored value is left out.
fn keep_stored(
    given: &BTreeMap<String, Option<String>>,
    stored: &BTreeMap<String, String>,
    manifest: &Manifest,
) -> Result<BTreeMap<String, String>> {
    let mut settings = BTreeMap::new();
    for (key, value) in given {
        match value.as_ref().or(stored.get(key)) {
            Some(value) => {
                settings.insert(key.clone(), value.clone());
            }
            None if manifest.settings.contains_key(key) => {}
            None => {
                return Err(Error::invalid(
                    format!("settings.{key}"),
                    "not a setting of this plugin",
                ));
            }
        }
    }
    Ok(settings)
}

/// `sha256:` and the first 16 hex digits of the value's SHA-256: enough to see that a
/// setting changed (or matches a known value) without recording it.
fn setting_fingerprint(value: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(value.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl Plugins {
    /// `background_db` writes the decision log (see [`Db::connect_background`]: a
    /// record lost with a database crash costs an explanation, never a sale).
    pub fn new(runtime: Arc<Runtime>, db: Db, background_db: Db, bus: Bus) -> Plugins {
        Plugins {
            runtime,
            decisions: decisions::DecisionLog::start(background_db),
            prices_include_tax: std::sync::atomic::AtomicBool::new(false),
            db,
            bus,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            loaded: Mutex::new(HashMap::new()),
            reloading: tokio::sync::Mutex::new(()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The active set now. Hold it for the length of one request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Whether catalog prices include tax, as pricing rules are told.
    pub fn prices_include_tax(&self) -> bool {
        self.prices_include_tax
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_prices_include_tax(&self, include: bool) {
        self.prices_include_tax
            .store(include, std::sync::atomic::Ordering::Relaxed);
    }

    /// An active notification channel of this kind (`email`, `push`, …) is there.
    pub fn has_channel(&self, kind: &str) -> bool {
        self.snapshot
            .load()
            .notifications
            .iter()
            .any(|active| active.plugin.manifest.channel.as_deref() == Some(kind))
    }

    /// Rebuilds the snapshot from the database and swaps it in. A plugin that no longer
    /// loads is left out with an error in the log; the others stay active.
    pub async fn reload(&self) -> Result<()> {
        let _guard = self.reloading.lock().await;
        let mut conn = self.db.pool.acquire().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTALLATION_COLUMNS} FROM plugin_installations WHERE enabled = 1 ORDER BY priority, plugin_id"
        )))
        .fetch_all(&mut *conn)
        .await?;
        let mut snapshot = Snapshot::default();
        for row in &rows {
            let install = installation(row)?;
            let version = sqlx::query(
                "SELECT v.manifest, v.hash, b.wasm FROM plugin_versions v JOIN plugin_binaries b ON b.hash = v.hash
                 WHERE v.plugin_id = $1 AND v.version = $2",
            )
            .bind(&install.plugin_id)
            .bind(&install.active_version)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(version) = version else {
                tracing::error!(
                    plugin = install.plugin_id,
                    version = install.active_version,
                    "active version is missing"
                );
                continue;
            };
            let manifest_toml: String = version.try_get(0)?;
            let hash: String = version.try_get(1)?;
            let wasm: Vec<u8> = version.try_get(2)?;
            let key = (
                install.plugin_id.clone(),
                install.active_version.clone(),
                hash,
                install.granted_hosts.clone(),
            );
            let plugin = match self.load_cached(&manifest_toml, key, wasm).await {
                Ok(plugin) => plugin,
                Err(err) => {
                    tracing::error!(plugin = install.plugin_id, error = %err.body().message, "plugin failed to load; left out of the active set");
                    continue;
                }
            };
            let settings = match plugin.manifest.resolve_settings(&install.settings) {
                Ok(settings) => Arc::new(settings),
                Err(problems) => {
                    tracing::error!(
                        plugin = install.plugin_id,
                        ?problems,
                        "stored settings no longer valid; plugin left out"
                    );
                    continue;
                }
            };
            let active = Arc::new(ActivePlugin {
                id: install.plugin_id.clone(),
                version: install.active_version.clone(),
                priority: install.priority,
                plugin: plugin.clone(),
                settings: settings.clone(),
            });
            match plugin.world() {
                World::PricingRule => snapshot.pricing.push(active),
                World::VariantTaxonomy => {
                    let p = plugin.clone();
                    let s = settings.clone();
                    let described = tokio::task::spawn_blocking(move || p.describe_taxonomy(&s))
                        .await
                        .map_err(blocking_error)?;
                    match described {
                        Ok((info, _)) => {
                            let product_type = product_type_of(info.product_type);
                            if let Some(existing) = snapshot.taxonomies.get(&product_type) {
                                tracing::warn!(
                                    plugin = active.id,
                                    other = existing.id,
                                    "two taxonomies for one product type; the one with the lower priority number wins"
                                );
                            } else {
                                snapshot.taxonomies.insert(product_type, active);
                                snapshot.taxonomy_attributes.insert(
                                    product_type,
                                    info.attributes
                                        .iter()
                                        .map(taxonomy::AttributeField::from_spec)
                                        .collect(),
                                );
                            }
                        }
                        Err(err) => {
                            tracing::error!(plugin = active.id, error = %err, "taxonomy describe failed; left out")
                        }
                    }
                }
                World::LoyaltyRule => snapshot.loyalty.push(active),
                World::PaymentAdapter => snapshot.payments.push(active),
                World::NotificationChannel => snapshot.notifications.push(active),
            }
        }
        self.snapshot.store(Arc::new(snapshot));
        metrics::counter!("olivine_plugin_snapshot_swaps_total").increment(1);
        Ok(())
    }

    async fn load_cached(
        &self,
        manifest_toml: &str,
        key: LoadKey,
        wasm: Vec<u8>,
    ) -> Result<Arc<Plugin>> {
        let hosts = key.3.clone();
        if let Some(plugin) = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(plugin.clone());
        }
        let manifest = Manifest::parse(manifest_toml).map_err(manifest_errors)?;
        let runtime = self.runtime.clone();
        let grant = (!hosts.is_empty()).then(|| HttpGrant {
            hosts,
            timeout: runtime.config().http_timeout,
        });
        // Compiling takes tens of milliseconds of CPU: keep it off the async workers.
        let plugin = tokio::task::spawn_blocking(move || runtime.load(manifest, &wasm, grant))
            .await
            .map_err(blocking_error)?
            .map_err(|e| Error::invalid("wasm", e.to_string()))?;
        let plugin = Arc::new(plugin);
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, plugin.clone());
        Ok(plugin)
    }

    /// Installs a package: the manifest is validated, the component compiled and checked
    /// against its world and ABI, its fixtures run through the real host; only then is
    /// it stored (binary by content hash) and, with `activate`, made the active version.
    /// A plugin installed for the first time starts `enabled` or not; a new version of
    /// an installed plugin keeps the installation's state.
    pub async fn install(
        &self,
        package: Package,
        activate: bool,
        enabled: bool,
        actor: &str,
    ) -> Result<PluginInfo> {
        let manifest = Manifest::parse(&package.manifest_toml).map_err(manifest_errors)?;
        let runtime = self.runtime.clone();
        let wasm = Arc::new(package.wasm);
        let fixtures = package.fixtures.clone();
        let check_manifest = manifest.clone();
        let check_wasm = wasm.clone();
        let failures = tokio::task::spawn_blocking(move || -> Result<Vec<FieldError>> {
            let plugin = runtime
                .load(check_manifest, &check_wasm, None)
                .map_err(|e| Error::invalid("wasm", e.to_string()))?;
            Ok(
                olivine_plugin_runtime::fixtures::run_all(&plugin, &fixtures)
                    .into_iter()
                    .filter(|outcome| !outcome.passed)
                    .map(|outcome| {
                        FieldError::new(format!("fixtures.{}", outcome.name), outcome.message)
                    })
                    .collect(),
            )
        })
        .await
        .map_err(blocking_error)??;
        if !failures.is_empty() {
            return Err(Error::Validation(failures));
        }
        let hash = Runtime::content_hash(&wasm);
        let version = manifest.version.to_string();
        let now = crate::time::now();
        let mut tx = self.db.begin().await?;
        let existing_binary = sqlx::query("SELECT 1 FROM plugin_binaries WHERE hash = $1")
            .bind(&hash)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !existing_binary {
            sqlx::query("INSERT INTO plugin_binaries (hash, wasm, size_bytes, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&hash)
                .bind(wasm.as_slice())
                .bind(wasm.len() as i64)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
        }
        let installed =
            sqlx::query("SELECT hash FROM plugin_versions WHERE plugin_id = $1 AND version = $2")
                .bind(&manifest.id)
                .bind(&version)
                .fetch_optional(&mut *tx)
                .await?;
        match installed {
            Some(row) => {
                let stored: String = row.try_get(0)?;
                if stored != hash {
                    return Err(Error::conflict(
                        Some("manifest.plugin.version"),
                        format!(
                            "{} {version} is already installed with different content; bump the version",
                            manifest.id
                        ),
                    ));
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO plugin_versions (plugin_id, version, world, manifest, fixtures, hash, installed_at, installed_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&manifest.id)
                .bind(&version)
                .bind(manifest.world.name())
                .bind(&package.manifest_toml)
                .bind(serde_json::to_string(&package.fixtures).map_err(anyhow::Error::from)?)
                .bind(&hash)
                .bind(&now)
                .bind(actor)
                .execute(&mut *tx)
                .await?;
            }
        }
        let current = self.installation(&mut tx, &manifest.id).await?;
        let before = current.as_ref().map(InstallationRow::audit_state);
        match current {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO plugin_installations ({INSTALLATION_COLUMNS}, updated_at)
                     VALUES ($1, $2, $3, NULL, $4, 100, '{{}}', '[]', 0, NULL, $5)"
                )))
                .bind(&manifest.id)
                .bind(manifest.world.name())
                .bind(&version)
                .bind(i64::from(enabled))
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
            Some(current) => {
                if current.world != manifest.world.name() {
                    return Err(Error::conflict(
                        Some("manifest.plugin.world"),
                        format!("{} is installed as a {} plugin", manifest.id, current.world),
                    ));
                }
                if activate && current.active_version != version {
                    self.switch_version(
                        &mut tx,
                        &manifest.id,
                        &version,
                        Some(&current.active_version),
                    )
                    .await?;
                }
            }
        }
        crate::bus::record(
            &mut tx,
            "plugin",
            &manifest.id,
            "plugin.installed",
            &serde_json::json!({ "id": manifest.id, "version": version, "hash": hash, "activate": activate, "actor": actor }),
        )
        .await?;
        let mut after = self.audit_state(&mut tx, &manifest.id).await?;
        after["installed"] =
            serde_json::json!({ "version": version, "hash": hash, "activate": activate });
        crate::audit::record(
            &mut tx,
            &crate::audit::Entry {
                actor,
                action: "plugin.installed",
                target_type: "plugin",
                target_id: manifest.id.clone(),
                before,
                after: Some(after),
            },
        )
        .await?;
        tx.commit().await?;
        self.changed().await?;
        tracing::info!(plugin = manifest.id, version, "plugin installed");
        self.info(&manifest.id).await
    }

    async fn installation(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<Option<InstallationRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTALLATION_COLUMNS} FROM plugin_installations WHERE plugin_id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(installation).transpose()
    }

    /// The installation's state now, for an audit entry's `after`.
    async fn audit_state(&self, conn: &mut AnyConnection, id: &str) -> Result<serde_json::Value> {
        Ok(self
            .installation(conn, id)
            .await?
            .map(|row| row.audit_state())
            .unwrap_or(serde_json::Value::Null))
    }

    /// Records a change of an installation in the audit log.
    async fn audit_change(
        &self,
        conn: &mut AnyConnection,
        actor: &str,
        action: &str,
        id: &str,
        before: &InstallationRow,
    ) -> Result<()> {
        let after = self.audit_state(conn, id).await?;
        crate::audit::record(
            conn,
            &crate::audit::Entry {
                actor,
                action,
                target_type: "plugin",
                target_id: id.to_owned(),
                before: Some(before.audit_state()),
                after: Some(after),
            },
        )
        .await?;
        Ok(())
    }

    async fn switch_version(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        version: &str,
        previous: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE plugin_installations SET active_version = $1, previous_version = $2,
                consecutive_failures = 0, updated_at = $3 WHERE plugin_id = $4",
        )
        .bind(version)
        .bind(previous)
        .bind(crate::time::now())
        .bind(id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn changed(&self) -> Result<()> {
        self.bus.notify();
        self.reload().await
    }

    /// Makes an installed version the active one.
    pub async fn activate(&self, id: &str, version: &str, actor: &str) -> Result<PluginInfo> {
        let mut tx = self.db.begin().await?;
        let current = self
            .installation(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("plugin `{id}`")))?;
        let exists =
            sqlx::query("SELECT 1 FROM plugin_versions WHERE plugin_id = $1 AND version = $2")
                .bind(id)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        if !exists {
            return Err(Error::invalid(
                "version",
                format!("{id} {version} is not installed"),
            ));
        }
        if current.active_version != version {
            self.switch_version(&mut tx, id, version, Some(&current.active_version))
                .await?;
        }
        crate::bus::record(&mut tx, "plugin", id, "plugin.activated",
            &serde_json::json!({ "id": id, "version": version, "previous": current.active_version, "actor": actor })).await?;
        self.audit_change(&mut tx, actor, "plugin.activated", id, &current)
            .await?;
        tx.commit().await?;
        self.changed().await?;
        self.info(id).await
    }

    /// Goes back to the version that was active before the current one.
    pub async fn rollback(&self, id: &str, actor: &str) -> Result<PluginInfo> {
        let mut tx = self.db.begin().await?;
        let current = self
            .installation(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("plugin `{id}`")))?;
        let Some(previous) = current.previous_version.clone() else {
            return Err(Error::conflict(
                None,
                format!("{id} has no previous version to roll back to"),
            ));
        };
        self.switch_version(&mut tx, id, &previous, Some(&current.active_version))
            .await?;
        crate::bus::record(&mut tx, "plugin", id, "plugin.rolled_back",
            &serde_json::json!({ "id": id, "version": previous, "from": current.active_version, "actor": actor })).await?;
        self.audit_change(&mut tx, actor, "plugin.rolled_back", id, &current)
            .await?;
        tx.commit().await?;
        self.changed().await?;
        self.info(id).await
    }

    /// Enables or disables, configures, reorders or grants hosts to a plugin.
    pub async fn update(&self, id: &str, patch: &PluginPatch, actor: &str) -> Result<PluginInfo> {
        let mut tx = self.db.begin().await?;
        let current = self
            .installation(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("plugin `{id}`")))?;
        let manifest_toml: String = sqlx::query(
            "SELECT manifest FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
        )
        .bind(id)
        .bind(&current.active_version)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let manifest = Manifest::parse(&manifest_toml).map_err(manifest_errors)?;
        let settings = match &patch.settings {
            Some(given) => {
                let settings = keep_stored(given, &current.settings, &manifest)?;
                manifest
                    .resolve_settings(&settings)
                    .map_err(settings_errors)?;
                Some(settings)
            }
            None => None,
        };
        if let Some(priority) = patch.priority
            && !(0..=1_000_000).contains(&priority)
        {
            return Err(Error::invalid("priority", "must be between 0 and 1000000"));
        }
        if let Some(hosts) = &patch.granted_hosts {
            let undeclared: Vec<FieldError> = hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| !manifest.declares_host(h))
                .map(|(i, h)| {
                    let message = if olivine_plugin_runtime::manifest::valid_host(h) {
                        format!(
                            "`{h}` is not among the hosts the manifest declares ({})",
                            manifest.http_hosts.join(", ")
                        )
                    } else {
                        format!(
                            "`{h}` is not a host name or host:port (no scheme, path or wildcard)"
                        )
                    };
                    FieldError::new(format!("granted_hosts[{i}]"), message)
                })
                .collect();
            if !undeclared.is_empty() {
                return Err(Error::Validation(undeclared));
            }
        }
        sqlx::query(
            "UPDATE plugin_installations SET
                enabled = COALESCE($1, enabled),
                priority = COALESCE($2, priority),
                settings = COALESCE($3, settings),
                granted_hosts = COALESCE($4, granted_hosts),
                consecutive_failures = CASE WHEN $1 = 1 THEN 0 ELSE consecutive_failures END,
                disabled_reason = CASE WHEN $1 = 1 THEN NULL ELSE disabled_reason END,
                updated_at = $5
             WHERE plugin_id = $6",
        )
        .bind(patch.enabled.map(i64::from))
        .bind(patch.priority)
        .bind(
            settings
                .as_ref()
                .map(|s| serde_json::to_string(s).unwrap_or_default()),
        )
        .bind(
            patch
                .granted_hosts
                .as_ref()
                .map(|h| serde_json::to_string(h).unwrap_or_default()),
        )
        .bind(crate::time::now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        crate::bus::record(
            &mut tx,
            "plugin",
            id,
            "plugin.updated",
            &serde_json::json!({
                "id": id,
                "enabled": patch.enabled,
                "priority": patch.priority,
                "settings_changed": patch.settings.is_some(),
                "granted_hosts": patch.granted_hosts,
                "actor": actor,
            }),
        )
        .await?;
        self.audit_change(&mut tx, actor, "plugin.updated", id, &current)
            .await?;
        tx.commit().await?;
        self.changed().await?;
        self.info(id).await
    }

    /// The content hash `id` `version` was installed with, if it was.
    pub async fn installed_hash(&self, id: &str, version: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT hash FROM plugin_versions WHERE plugin_id = $1 AND version = $2")
                .bind(id)
                .bind(version)
                .fetch_optional(&self.db.pool)
                .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub async fn list(&self) -> Result<Vec<PluginInfo>> {
        let ids: Vec<String> =
            sqlx::query("SELECT plugin_id FROM plugin_installations ORDER BY plugin_id")
                .fetch_all(&self.db.pool)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
        let mut infos = Vec::new();
        for id in ids {
            infos.push(self.info(&id).await?);
        }
        Ok(infos)
    }

    /// The settings the active version of plugin `id` declares (the admin's form).
    pub async fn declared_settings(
        &self,
        id: &str,
    ) -> Result<BTreeMap<String, olivine_plugin_runtime::manifest::SettingSpec>> {
        let row = sqlx::query(
            "SELECT v.manifest FROM plugin_installations i
             JOIN plugin_versions v ON v.plugin_id = i.plugin_id AND v.version = i.active_version
             WHERE i.plugin_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("plugin `{id}`")))?;
        let text: String = row.try_get(0)?;
        Ok(Manifest::parse(&text).map_err(manifest_errors)?.settings)
    }

    pub async fn info(&self, id: &str) -> Result<PluginInfo> {
        let mut conn = self.db.pool.acquire().await?;
        let install = self
            .installation(&mut conn, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("plugin `{id}`")))?;
        let versions = sqlx::query(
            "SELECT version, hash, installed_at, installed_by, manifest FROM plugin_versions WHERE plugin_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let mut manifest = None;
        let mut list = Vec::new();
        for row in &versions {
            let version: String = row.try_get(0)?;
            if version == install.active_version {
                let text: String = row.try_get(4)?;
                manifest = Manifest::parse(&text).ok();
            }
            list.push(PluginVersion {
                version,
                hash: row.try_get(1)?,
                installed_at: row.try_get(2)?,
                installed_by: row.try_get(3)?,
            });
        }
        let snapshot = self.snapshot();
        let loaded = snapshot
            .pricing
            .iter()
            .chain(snapshot.taxonomies.values())
            .chain(&snapshot.loyalty)
            .chain(&snapshot.payments)
            .chain(&snapshot.notifications)
            .any(|p| p.id == id && p.version == install.active_version);
        let declared = manifest.as_ref().map(|m| &m.settings);
        // A manifest that no longer parses says nothing of its secrets: none is shown.
        let secret = |key: &str| declared.is_none_or(|d| d.get(key).is_some_and(|s| s.secret));
        let secrets = declared
            .into_iter()
            .flatten()
            .filter(|(_, spec)| spec.secret)
            .map(|(key, _)| {
                let set = install.settings.contains_key(key);
                (key.clone(), SecretSetting { set })
            })
            .collect();
        let settings = install
            .settings
            .into_iter()
            .map(|(key, value)| {
                let shown = (!secret(&key)).then_some(value);
                (key, shown)
            })
            .collect();
        Ok(PluginInfo {
            id: install.plugin_id,
            world: install.world,
            description: manifest
                .as_ref()
                .map(|m| m.description.clone())
                .unwrap_or_default(),
            active_version: install.active_version,
            previous_version: install.previous_version,
            enabled: install.enabled,
            priority: install.priority,
            settings,
            secrets,
            requested_hosts: manifest.map(|m| m.http_hosts).unwrap_or_default(),
            granted_hosts: install.granted_hosts,
            consecutive_failures: install.consecutive_failures,
            disabled_reason: install.disabled_reason,
            loaded,
            versions: list,
        })
    }

    /// Applies the failure policy's bookkeeping after a call: a success resets the
    /// counter; the Nth consecutive failure disables the plugin, with an event and a
    /// metric.
    pub async fn record_outcome(
        &self,
        plugin: &ActivePlugin,
        outcome: std::result::Result<(), &CallError>,
    ) {
        let result = match outcome {
            // Refused before the plugin ran: says nothing about the plugin.
            Err(CallError::InputTooLarge(_)) => return,
            Ok(()) => {
                let had_failures = self
                    .failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&plugin.id)
                    .is_some_and(|n| n > 0);
                if !had_failures {
                    return;
                }
                sqlx::query(
                    "UPDATE plugin_installations SET consecutive_failures = 0 WHERE plugin_id = $1",
                )
                .bind(&plugin.id)
                .execute(&self.db.pool)
                .await
                .map(|_| ())
                .map_err(Error::from)
            }
            Err(err) => {
                *self
                    .failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(plugin.id.clone())
                    .or_default() += 1;
                self.record_failure(plugin, err).await
            }
        };
        if let Err(err) = result {
            tracing::warn!(plugin = plugin.id, error = %err, "could not record a plugin call outcome");
        }
    }

    async fn record_failure(&self, plugin: &ActivePlugin, err: &CallError) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let failures: i64 = sqlx::query(
            "UPDATE plugin_installations SET consecutive_failures = consecutive_failures + 1
             WHERE plugin_id = $1 RETURNING consecutive_failures",
        )
        .bind(&plugin.id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
        let disable = failures >= AUTO_DISABLE_AFTER;
        if disable {
            let reason = format!("disabled after {failures} consecutive failures; last: {err}");
            let before = self.installation(&mut tx, &plugin.id).await?;
            let disabled = sqlx::query("UPDATE plugin_installations SET enabled = 0, disabled_reason = $1, updated_at = $2 WHERE plugin_id = $3 AND enabled = 1")
                .bind(&reason)
                .bind(crate::time::now())
                .bind(&plugin.id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            crate::bus::record(&mut tx, "plugin", &plugin.id, "plugin.auto_disabled",
                &serde_json::json!({ "id": plugin.id, "version": plugin.version, "failures": failures, "last_error": err.to_string() })).await?;
            if let Some(before) = before.filter(|_| disabled) {
                self.audit_change(
                    &mut tx,
                    crate::audit::KERNEL_ACTOR,
                    "plugin.auto_disabled",
                    &plugin.id,
                    &before,
                )
                .await?;
            }
        }
        tx.commit().await?;
        if disable {
            self.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&plugin.id);
            metrics::counter!("olivine_plugin_auto_disabled_total", "plugin" => plugin.id.clone())
                .increment(1);
            tracing::error!(
                plugin = plugin.id,
                failures,
                "plugin disabled automatically"
            );
            if let Err(e) = self.changed().await {
                tracing::error!(error = %e.body().message, "reload after auto-disable failed");
            }
        }
        Ok(())
    }
}

/// The answer of a finished call, as its caller judged it, for [`Plugins::book_call`].
pub struct Judged<'a> {
    /// `ok`, `rejected`, `declined`, … (a failed call records its error kind instead).
    pub outcome: &'a str,
    pub output_hash: String,
    /// What the plugin answered, for the decisions explorer: [`decisions::detail`] of a
    /// short summary with no card data, tokens or personal data; `None` to record none.
    pub detail: Option<String>,
}

impl Plugins {
    /// Books a finished call: `/metrics`, the failure policy's count, and the decision
    /// record that lets the answer be explained later.
    pub async fn book_call(
        &self,
        plugin: &ActivePlugin,
        call: &'static str,
        input_hash: String,
        result: std::result::Result<(olivine_plugin_runtime::CallStats, Judged<'_>), &CallError>,
    ) {
        let mut decision = decisions::Decision {
            plugin_id: plugin.id.clone(),
            version: plugin.version.clone(),
            call,
            input_hash,
            output_hash: String::new(),
            outcome: String::new(),
            fuel: 0,
            duration_us: 0,
            detail: None,
        };
        match result {
            Ok((stats, judged)) => {
                observe_call(plugin, call, "ok", Some(stats));
                decision.fuel = stats.fuel_used;
                decision.duration_us = stats.duration.as_micros() as u64;
                decision.outcome = judged.outcome.to_owned();
                decision.output_hash = judged.output_hash;
                decision.detail = judged.detail;
                self.decisions.record(decision);
                self.record_outcome(plugin, Ok(())).await;
            }
            Err(err) => {
                observe_call(plugin, call, err.kind(), None);
                decision.outcome = err.kind().to_owned();
                self.decisions.record(decision);
                self.record_outcome(plugin, Err(err)).await;
            }
        }
    }
}

/// Records a call in `/metrics`.
fn observe_call(
    plugin: &ActivePlugin,
    call: &'static str,
    outcome: &str,
    stats: Option<olivine_plugin_runtime::CallStats>,
) {
    metrics::counter!("olivine_plugin_calls_total", "plugin" => plugin.id.clone(), "call" => call, "outcome" => outcome.to_owned())
        .increment(1);
    if let Some(stats) = stats {
        metrics::histogram!("olivine_plugin_call_duration_seconds", "plugin" => plugin.id.clone(), "call" => call)
            .record(stats.duration.as_secs_f64());
        metrics::histogram!("olivine_plugin_call_fuel", "plugin" => plugin.id.clone(), "call" => call)
            .record(stats.fuel_used as f64);
    }
}

/// The node-local consumer that keeps every node's snapshot current: plugin events (from
/// this node or another) trigger a reload. Reloading is idempotent.
pub struct PluginReloader {
    pub plugins: Arc<Plugins>,
}

impl crate::bus::NodeLocalConsumer for PluginReloader {
    fn name(&self) -> &'static str {
        "plugin-reloader"
    }

    fn handle<'a>(&'a self, event: &'a crate::bus::Event) -> crate::bus::ConsumerFuture<'a> {
        Box::pin(async move {
            if event.aggregate_type == "plugin" {
                self.reload().await?;
            }
            if event.event_type == "settings.updated"
                && let Some(include) = event.payload["prices_include_tax"].as_bool()
            {
                self.plugins.set_prices_include_tax(include);
            }
            Ok(())
        })
    }

    fn resync(&self) -> crate::bus::ConsumerFuture<'_> {
        Box::pin(self.reload())
    }
}

impl PluginReloader {
    async fn reload(&self) -> anyhow::Result<()> {
        self.plugins
            .reload()
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.body().message))
    }
}
