//! The deployment a platform team runs: the Dockerfile, the Kubernetes manifests (kustomize
//! base), the Grafana dashboard and the Prometheus alert rules, checked by
//! `scripts/check-deploy` (Kubernetes schemas with kubernetes-validate, `promtool check
//! rules` and `promtool test rules`, the dashboard's queries against the metrics the
//! kernel exports).

use std::process::Command;

use crate::common::repo_root;

#[test]
fn manifests_dashboard_and_alert_rules_are_valid() {
    let out = Command::new(repo_root().join("scripts/check-deploy"))
        .output()
        .expect("scripts/check-deploy runs");
    assert!(
        out.status.success(),
        "scripts/check-deploy failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every metric the dashboard and the alert rules read is one the kernel exports (its
/// name is written in the kernel's source), so a renamed metric cannot leave a panel
/// blank or an alert silent.
#[test]
fn the_dashboard_and_alerts_read_only_metrics_the_kernel_exports() {
    fn rust_sources(dir: &std::path::Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut source = String::new();
    rust_sources(&repo_root().join("kernel/src"), &mut source);
    rust_sources(&repo_root().join("runtime/src"), &mut source);
    let mut read = String::new();
    for file in [
        "deploy/grafana/olivine-dashboard.json",
        "deploy/prometheus/alerts.yml",
    ] {
        read.push_str(&std::fs::read_to_string(repo_root().join(file)).unwrap());
    }
    let mut names = std::collections::BTreeSet::new();
    let mut i = 0;
    while let Some(start) = read[i..].find("olivine_").map(|s| s + i) {
        let end = read[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(read.len(), |e| e + start);
        let mut name = &read[start..end];
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && name.contains("duration_seconds")
            {
                name = base;
            }
        }
        names.insert(name.to_owned());
        i = end.max(start + 1);
    }
    assert!(names.len() >= 10, "{names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !source.contains(&format!("\"{n}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "read by deploy/ but exported by no kernel code: {missing:?}"
    );
}
