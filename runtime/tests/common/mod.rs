#![allow(dead_code)]

use std::path::PathBuf;

use olivine_plugin_runtime::{Manifest, Plugin, Runtime, RuntimeConfig};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (manifest, wasm) of a first-party plugin: `dir` under plugins/, `crate_name` its lib.
pub fn package(dir: &str, crate_name: &str) -> (Manifest, Vec<u8>) {
    let wasm_dir =
        olivine_plugin_runtime::build::first_party_plugins(&repo_root()).expect("plugins build");
    let manifest =
        std::fs::read_to_string(repo_root().join("plugins").join(dir).join("plugin.toml"))
            .expect("plugin.toml");
    let manifest = Manifest::parse(&manifest).expect("valid manifest");
    let wasm = std::fs::read(wasm_dir.join(format!("{crate_name}.wasm"))).expect("wasm built");
    (manifest, wasm)
}

pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime")
}

pub fn load(runtime: &Runtime, dir: &str, crate_name: &str) -> Plugin {
    let (manifest, wasm) = package(dir, crate_name);
    runtime.load(manifest, &wasm, None).expect("plugin loads")
}
