//! mesos-image: build cloud guest images from diskimage-builder elements.
//!
//! The pipeline is `plan -> hooks -> root -> extra-data -> pre-install/install/post-install ->
//! post-root -> finalise -> cleanup -> disk -> convert -> publish`; each stage lives in its own
//! module under `stage/` (docs/architecture.md maps stage, module and the data handed on).

pub mod arch;
pub mod bootable;
pub mod build;
pub mod cache;
pub mod child;
pub mod cli;
pub mod clock;
pub mod disk;
pub mod element;
pub mod failure;
pub mod format;
pub mod guard;
pub mod io;
pub mod manifest;
pub mod mirror;
pub mod output;
pub mod paths;
pub mod plan;
pub mod progress;
pub mod qcow2;
pub mod recipe;
pub mod redact;
pub mod reproducible;
pub mod sandbox;
pub mod sbom;
pub mod settings;
pub mod shell;
pub mod stage;
pub mod upload;
pub mod vmtest;
pub mod workdir;
pub mod yaml_guard;
