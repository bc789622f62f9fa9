//! The real upstream element trees (tripleo-image-elements, heat-agents, magnum 5.x,
//! diskimage-builder), fetched from PyPI at test time by tests/upstream/fetch.sh into a cache
//! (`MESOS_IMAGE_UPSTREAM_CACHE`). Nothing of them is committed.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::repo_root;

/// Where each upstream tree's elements live, once fetched.
#[derive(Debug, Clone)]
pub struct UpstreamTrees {
    /// tripleo-image-elements 15.0.0 `elements/`.
    pub tripleo: PathBuf,
    /// heat-agents 13.0.0: the heat-config* elements sit at the sdist's top.
    pub heat_agents: PathBuf,
    /// magnum 5.x `magnum/drivers/mesos_ubuntu_v1/image` (`docker`, `mesos`).
    pub magnum: PathBuf,
    /// diskimage-builder 3.43 `diskimage_builder/elements`.
    pub dib: PathBuf,
}

impl UpstreamTrees {
    /// Fetch (or find in the cache) every tree; panics with fetch.sh's one-line error, so a test
    /// without network or pip fails rather than passes.
    pub fn fetch() -> UpstreamTrees {
        let script = repo_root().join("tests/upstream/fetch.sh");
        let out = Command::new(&script).output().expect("run tests/upstream/fetch.sh");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr).trim());
        let listing = String::from_utf8(out.stdout).expect("fetch.sh prints paths");
        let tree = |name: &str| -> PathBuf {
            listing
                .lines()
                .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("fetch.sh listed no `{name}` tree:\n{listing}"))
        };
        UpstreamTrees {
            tripleo: tree("tripleo-image-elements"),
            heat_agents: tree("heat-agents"),
            magnum: tree("magnum"),
            dib: tree("diskimage-builder"),
        }
    }

    /// The Heat Mesos guide's ELEMENTS_PATH: tripleo-image-elements, then the heat-config
    /// elements, then Magnum's mesos elements.
    pub fn guide_elements_path(&self) -> String {
        join_path(&[&self.tripleo, &self.heat_agents, &self.magnum])
    }
}

/// `a:b:c`, as ELEMENTS_PATH is written.
pub fn join_path(entries: &[&Path]) -> String {
    entries.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")
}
