//! mesos-image: build cloud guest images from diskimage-builder elements.
//!
//! A build is `plan`, then the steps of [`pipeline::Pipeline::for_plan`] (hooks, base, each
//! phase, finalise, cleanup, disk, convert, publish, SBOM, manifest, with the cache's save and
//! restore points); each stage lives in its own module under `stage/` (docs/architecture.md
//! maps step, module and the data handed on).

pub mod arch;
pub mod archive_index;
pub mod bootable;
pub mod build;
pub mod cache;
pub mod child;
pub mod cli;
pub mod clock;
pub mod disk;
pub mod dpkg_status;
pub mod element;
pub mod emulation;
pub mod failure;
pub mod format;
pub mod guard;
pub mod io;
pub mod layout;
pub mod manifest;
pub mod mirror;
pub mod output;
pub mod paths;
pub mod pipeline;
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
pub mod step_id;
pub mod upload;
pub mod vmtest;
pub mod workdir;
pub mod yaml_guard;
