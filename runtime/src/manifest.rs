//! `plugin.toml`: what a plugin is, which world it implements, what it may do and which
//! settings it takes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    PricingRule,
    VariantTaxonomy,
    LoyaltyRule,
    PaymentAdapter,
    NotificationChannel,
}

impl World {
    pub const ALL: [World; 5] = [
        World::PricingRule,
        World::VariantTaxonomy,
        World::LoyaltyRule,
        World::PaymentAdapter,
        World::NotificationChannel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            World::PricingRule => "pricing-rule",
            World::VariantTaxonomy => "variant-taxonomy",
            World::LoyaltyRule => "loyalty-rule",
            World::PaymentAdapter => "payment-adapter",
            World::NotificationChannel => "notification-channel",
        }
    }

    pub fn parse(name: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.name() == name)
    }

    /// The interface the world exports (`olivine:plugin/<interface>@<version>`).
    pub fn export_interface(self) -> &'static str {
        match self {
            World::PricingRule => "pricing",
            World::VariantTaxonomy => "taxonomy",
            World::LoyaltyRule => "loyalty",
            World::PaymentAdapter => "payments",
            World::NotificationChannel => "notifications",
        }
    }

    /// Whether plugins of this world may be granted outbound HTTP.
    pub fn may_use_http(self) -> bool {
        matches!(self, World::PaymentAdapter | World::NotificationChannel)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SettingType {
    String,
    Integer,
    Boolean,
    StringList,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingSpec {
    #[serde(rename = "type")]
    pub kind: SettingType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub description: String,
    /// A credential (an API key, a token, a signing secret): written by the merchant and
    /// never shown back; the admin API answers `null` for its value. Optional: a
    /// manifest without it declares no secret.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// Per-plugin overrides of the call limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Instruction budget per call (before scaling with cart size).
    pub fuel: Option<u64>,
    pub memory_mib: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    pub id: String,
    pub version: String,
    pub world: String,
    pub abi: String,
    #[serde(default)]
    pub description: String,
    /// A notification channel's kind: `email`, `push`, `sms`, `webhook`, … (what the
    /// kernel routes to it, and what the shop may promise, e.g. a confirmation email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Hosts (`host` or `host:port`) the plugin wants to reach over HTTP.
    #[serde(default)]
    pub http: Vec<String>,
}

/// What of the cart a pricing rule reads (`[inputs]`). Like a Shopify Function's input
/// query: what a rule does not ask for is not copied into it, which is most of a large
/// cart's cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// The cart's products (slug, tags, categories). `false`: the rule sees an empty
    /// `products` list (lines still carry their `product_index`).
    #[serde(default = "yes")]
    pub products: bool,
}

fn yes() -> bool {
    true
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs { products: true }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub plugin: PluginSection,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default)]
    pub settings: BTreeMap<String, SettingSpec>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub inputs: Inputs,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub id: String,
    pub version: semver::Version,
    pub world: World,
    pub abi: semver::Version,
    pub description: String,
    /// A notification channel's kind (`email`, `push`, `webhook`, …).
    pub channel: Option<String>,
    pub http_hosts: Vec<String>,
    pub settings: BTreeMap<String, SettingSpec>,
    pub limits: Limits,
    pub inputs: Inputs,
}

/// In `[permissions] http`: the plugin may ask for any host, and reaches only those the
/// merchant grants (a webhook whose URL is a setting, say).
pub const ANY_HOST: &str = "*";

/// A host name or `host:port`, without scheme, path or wildcards.
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

/// One problem with a manifest, naming its key (e.g. `plugin.world`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ManifestError {
    pub field: String,
    pub message: String,
}

fn problem(field: &str, message: impl Into<String>) -> ManifestError {
    ManifestError {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn parse_abi(text: &str) -> Option<semver::Version> {
    let text = text.trim();
    semver::Version::parse(text)
        .ok()
        .or_else(|| semver::Version::parse(&format!("{text}.0")).ok())
}

impl Manifest {
    /// Whether the manifest lets the merchant grant `host`.
    pub fn declares_host(&self, host: &str) -> bool {
        valid_host(host)
            && self
                .http_hosts
                .iter()
                .any(|declared| declared == ANY_HOST || declared == host)
    }

    pub fn parse(toml_text: &str) -> Result<Manifest, Vec<ManifestError>> {
        let file: ManifestFile = toml::from_str(toml_text).map_err(|err| {
            vec![problem(
                "plugin.toml",
                err.to_string()
                    .lines()
                    .next()
                    .unwrap_or("invalid TOML")
                    .to_owned()
                    + &err
                        .span()
                        .map(|s| format!(" (at byte {})", s.start))
                        .unwrap_or_default(),
            )]
        })?;
        Manifest::from_file(file)
    }

    pub fn from_file(file: ManifestFile) -> Result<Manifest, Vec<ManifestError>> {
        let mut problems = Vec::new();
        let id = file.plugin.id.trim().to_owned();
        if !(3..=64).contains(&id.len())
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || id.starts_with('-')
        {
            problems.push(problem(
                "plugin.id",
                "use 3-64 lowercase letters, digits and hyphens",
            ));
        }
        let version = semver::Version::parse(file.plugin.version.trim())
            .map_err(|e| problems.push(problem("plugin.version", format!("not semver: {e}"))))
            .ok();
        let world = World::parse(file.plugin.world.trim());
        if world.is_none() {
            problems.push(problem(
                "plugin.world",
                format!(
                    "unknown world `{}`; expected one of {}",
                    file.plugin.world,
                    World::ALL.map(World::name).join(", ")
                ),
            ));
        }
        let abi = parse_abi(&file.plugin.abi);
        if abi.is_none() {
            problems.push(problem(
                "plugin.abi",
                "expected the olivine:plugin version it was built against, e.g. 0.1",
            ));
        }
        if let Some(world) = world
            && !file.permissions.http.is_empty()
            && !world.may_use_http()
        {
            problems.push(problem(
                "permissions.http",
                format!(
                    "{} plugins are pure functions and get no network",
                    world.name()
                ),
            ));
        }
        for (i, host) in file.permissions.http.iter().enumerate() {
            if host != ANY_HOST && !valid_host(host) {
                problems.push(problem(
                    &format!("permissions.http[{i}]"),
                    "a host name or host:port without scheme or path, or \"*\" alone",
                ));
            }
        }
        for (name, spec) in &file.settings {
            // `store.` keys are the kernel's facts of the store (see PLUGINS.md).
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                problems.push(problem(
                    &format!("settings.{name}"),
                    "a setting's name is 1-64 lowercase letters, digits and underscores",
                ));
            }
            if let Some(default) = &spec.default
                && let Err(message) = check_setting_value(spec.kind, default)
            {
                problems.push(problem(&format!("settings.{name}.default"), message));
            }
        }
        if let Some(fuel) = file.limits.fuel
            && !(100_000..=10_000_000_000).contains(&fuel)
        {
            problems.push(problem("limits.fuel", "between 100,000 and 10,000,000,000"));
        }
        if let Some(mib) = file.limits.memory_mib
            && !(1..=256).contains(&mib)
        {
            problems.push(problem("limits.memory_mib", "between 1 and 256"));
        }
        if let Some(channel) = &file.plugin.channel {
            if world != Some(World::NotificationChannel) {
                problems.push(problem(
                    "plugin.channel",
                    "only notification-channel plugins name a channel",
                ));
            } else if !(2..=32).contains(&channel.len())
                || !channel.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            {
                problems.push(problem(
                    "plugin.channel",
                    "a channel kind in lowercase letters, e.g. email, push, sms, webhook",
                ));
            }
        }
        if file.inputs != Inputs::default() && world != Some(World::PricingRule) {
            problems.push(problem("inputs", "only pricing rules declare [inputs]"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        match (version, world, abi) {
            (Some(version), Some(world), Some(abi)) => Ok(Manifest {
                id,
                version,
                world,
                abi,
                description: file.plugin.description,
                channel: file.plugin.channel,
                http_hosts: file.permissions.http,
                settings: file.settings,
                limits: file.limits,
                inputs: file.inputs,
            }),
            _ => Err(vec![problem("plugin", "invalid")]),
        }
    }

    /// Checks merchant-set settings against the schema and fills in defaults. Unknown
    /// keys and missing required settings are errors naming the key.
    pub fn resolve_settings(
        &self,
        given: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, Vec<ManifestError>> {
        let mut problems = Vec::new();
        let mut resolved = BTreeMap::new();
        for key in given.keys() {
            if !self.settings.contains_key(key) {
                problems.push(problem(
                    &format!("settings.{key}"),
                    "not a setting of this plugin",
                ));
            }
        }
        for (key, spec) in &self.settings {
            match given.get(key).or(spec.default.as_ref()) {
                Some(value) => match check_setting_value(spec.kind, value) {
                    Ok(()) => {
                        resolved.insert(key.clone(), value.clone());
                    }
                    Err(message) => problems.push(problem(&format!("settings.{key}"), message)),
                },
                None if spec.required => {
                    problems.push(problem(&format!("settings.{key}"), "is required"))
                }
                None => {}
            }
        }
        if problems.is_empty() {
            Ok(resolved)
        } else {
            Err(problems)
        }
    }
}

fn check_setting_value(kind: SettingType, value: &str) -> Result<(), String> {
    if value.len() > 4096 {
        return Err("at most 4096 characters".to_owned());
    }
    match kind {
        SettingType::String | SettingType::StringList => Ok(()),
        SettingType::Integer => value
            .trim()
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| format!("`{value}` is not an integer")),
        SettingType::Boolean => match value.trim() {
            "true" | "false" => Ok(()),
            _ => Err(format!("`{value}` is not true or false")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[plugin]
id = "multi-buy"
version = "0.1.0"
world = "pricing-rule"
abi = "0.1"
description = "x"

[settings.buy]
type = "integer"
required = true
default = "3"
"#;

    #[test]
    fn parses_a_manifest() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.world, World::PricingRule);
        assert_eq!(m.abi, semver::Version::new(0, 1, 0));
        let settings = m.resolve_settings(&BTreeMap::new()).unwrap();
        assert_eq!(settings["buy"], "3");
        let bad = m
            .resolve_settings(&BTreeMap::from([("buy".into(), "x".into())]))
            .unwrap_err();
        assert_eq!(bad[0].field, "settings.buy");
        let unknown = m
            .resolve_settings(&BTreeMap::from([("nope".into(), "1".into())]))
            .unwrap_err();
        assert_eq!(unknown[0].field, "settings.nope");
    }

    #[test]
    fn only_notification_channels_name_a_channel_and_setting_names_have_no_dot() {
        let channel = |world: &str, kind: &str| {
            GOOD.replace("pricing-rule", world).replace(
                "description = \"x\"",
                &format!("description = \"x\"\nchannel = \"{kind}\""),
            )
        };
        let m = Manifest::parse(&channel("notification-channel", "email")).unwrap();
        assert_eq!(m.channel.as_deref(), Some("email"));
        assert_eq!(Manifest::parse(GOOD).unwrap().channel, None);
        let e = Manifest::parse(&channel("pricing-rule", "email")).unwrap_err();
        assert_eq!(e[0].field, "plugin.channel");
        let e = Manifest::parse(&channel("notification-channel", "E Mail")).unwrap_err();
        assert_eq!(e[0].field, "plugin.channel");
        // `store.` keys are the kernel's facts: no setting can take one.
        let dotted = GOOD.replace("[settings.buy]", "[settings.\"store.buy\"]");
        let e = Manifest::parse(&dotted).unwrap_err();
        assert_eq!(e[0].field, "settings.store.buy");
    }

    #[test]
    fn manifest_errors_name_the_key() {
        let e = Manifest::parse(&GOOD.replace("pricing-rule", "coffee-machine")).unwrap_err();
        assert_eq!(e[0].field, "plugin.world");
        let e = Manifest::parse(&GOOD.replace("0.1.0", "one")).unwrap_err();
        assert_eq!(e[0].field, "plugin.version");
        let e = Manifest::parse(&format!(
            "{GOOD}\n[permissions]\nhttp = [\"evil.example\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e[0].field, "permissions.http");
        let e = Manifest::parse("this is not toml").unwrap_err();
        assert_eq!(e[0].field, "plugin.toml");
        let e = Manifest::parse(&GOOD.replace("id = \"multi-buy\"", "id = \"X\"")).unwrap_err();
        assert_eq!(e[0].field, "plugin.id");
    }

    #[test]
    fn a_setting_may_be_secret_and_is_not_by_default() {
        let m = Manifest::parse(GOOD).unwrap();
        assert!(!m.settings["buy"].secret);
        let secret = format!("{GOOD}\n[settings.api_key]\ntype = \"string\"\nsecret = true\n");
        let m = Manifest::parse(&secret).unwrap();
        assert!(m.settings["api_key"].secret);
        assert!(!m.settings["buy"].secret);
        let e = Manifest::parse(&secret.replace("secret = true", "secret = \"yes\"")).unwrap_err();
        assert_eq!(e[0].field, "plugin.toml");
    }

    #[test]
    fn any_host_lets_the_merchant_choose() {
        let with = |hosts: &str| {
            GOOD.replace("pricing-rule", "notification-channel")
                + &format!("\n[permissions]\nhttp = [{hosts}]\n")
        };
        let any = Manifest::parse(&with("\"*\"")).unwrap();
        assert!(any.declares_host("hooks.shop.test:8443"));
        assert!(!any.declares_host("evil/path"));
        let fixed = Manifest::parse(&with("\"hooks.example.com\"")).unwrap();
        assert!(fixed.declares_host("hooks.example.com"));
        assert!(!fixed.declares_host("other.example.com"));
        let e = Manifest::parse(&with("\"*.example.com\"")).unwrap_err();
        assert_eq!(e[0].field, "permissions.http[0]");
    }
}
