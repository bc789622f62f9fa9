//! Same inputs, same bytes. Everything a build would otherwise take from the clock or the
//! random pool is pinned here: the time ([`epoch`], `SOURCE_DATE_EPOCH`), the identifiers
//! (a [`seed::Seed`] from the inputs), file times in the tree ([`clamp`]), and the stamps
//! `qemu-img` writes into VHD and VMDK files ([`formats`]). [`listing`] describes a finished
//! tree file by file so two builds can be compared by path, and [`content`] says what differs
//! inside a file (`build --check-reproducible`, [`crate::cli::check_reproducible`]).

pub mod clamp;
pub mod content;
pub mod epoch;
pub mod formats;
pub mod listing;
pub mod seed;

pub use epoch::{EpochOrigin, SourceDateEpoch};
pub use seed::Seed;

/// What one build pins: the time every timestamp is clamped to and the seed every identifier
/// is derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    pub epoch: SourceDateEpoch,
    pub seed: Seed,
}

impl Pins {
    /// Fixed pins for callers that build a disk outside a full build (tests, tools).
    pub fn fixed(epoch: i64, seed_text: &str) -> Pins {
        Pins { epoch: SourceDateEpoch { seconds: epoch, origin: EpochOrigin::Given }, seed: Seed::from_text(seed_text) }
    }
}
