//! DIB elements: discovery on `ELEMENTS_PATH`, dependency expansion, hook merging,
//! `package-installs` and `pkg-map` (DESIGN.md section 4).

mod phase;

pub use phase::Phase;
