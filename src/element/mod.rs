//! DIB elements: discovery on `ELEMENTS_PATH`, dependency expansion, hook merging,
//! `package-installs` and `pkg-map` (docs/dib-compat.md).
//!
//! The entry point is [`ElementLibrary::scan`] over a search path from [`search_path`]; then
//! [`ElementLibrary::resolve`] expands a requested set the way DIB does, [`merge_hooks`] builds
//! the per-phase run-parts lists, and [`packages::collect`] the per-phase package sets.

pub mod dib_block_device;
pub mod dib_env;
pub mod dib_tree;
pub mod environment;
mod error;
mod hooks;
pub mod installtype;
mod library;
pub mod packages;
mod phase;
pub mod pkgmap;
pub mod request;
mod resolve;
pub mod runparts;

pub use error::ElementError;
pub use hooks::{element_scripts, merge_environment_d, merge_hooks, merge_hooks_typed, HookScript};
pub use library::{search_path, Element, ElementLibrary};
pub use phase::Phase;
