//! Named crash points for crash-consistency tests. `OLIVINE_FAILPOINTS=a,b` makes the
//! process abort (as a power cut would) when it reaches point `a` or `b`. Unset, a check
//! costs one atomic load.

use std::collections::HashSet;
use std::sync::OnceLock;

static ARMED: OnceLock<HashSet<String>> = OnceLock::new();

fn armed() -> &'static HashSet<String> {
    ARMED.get_or_init(|| {
        std::env::var("OLIVINE_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Aborts the process if the point `name` is armed.
pub fn hit(name: &str) {
    let armed = armed();
    if !armed.is_empty() && armed.contains(name) {
        eprintln!("failpoint {name} reached: aborting");
        std::process::abort();
    }
}

/// Like [`hit`], for async code; `OLIVINE_FAILPOINTS=name=hang` makes the point wait
/// forever instead (the process stays up, mid-work, for a test to `kill -9` it).
pub async fn hit_async(name: &str) {
    let armed = armed();
    if armed.is_empty() {
        return;
    }
    if armed.contains(&format!("{name}=hang")) {
        eprintln!("failpoint {name} reached: hanging");
        std::future::pending::<()>().await;
    }
    hit(name);
}
