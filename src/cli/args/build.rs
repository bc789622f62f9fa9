//! `mesos-image build`'s arguments.

use std::path::PathBuf;

use clap::Args;

use super::search::{ElementsPathArgs, RecipesDirArgs};
use crate::layout::OutputLayout;
use crate::recipe::{BaseMethod, Compression, ImageFormat};
use crate::settings::*;
use crate::stage::BreakPoint;

/// The recipe used when neither elements nor `--recipe` are given.
pub const DEFAULT_RECIPE: &str = "ubuntu-mesos";

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Elements to build from (DIB mode: no recipe applies; one element must provide
    /// operating-system). Without elements and without --recipe, the ubuntu-mesos recipe is used.
    #[arg(value_name = "ELEMENTS", conflicts_with = "recipe")]
    pub elements: Vec<String>,
    #[arg(short = OUTPUT.short, long = OUTPUT.flag, help = OUTPUT.help_text(), value_name = "PATH", required_unless_present = "dry_run")]
    pub output: Option<PathBuf>,
    #[arg(long = RECIPE.flag, help = RECIPE.help_text(), value_name = "NAME|PATH")]
    pub recipe: Option<String>,
    #[command(flatten)]
    pub recipes_dir: RecipesDirArgs,
    #[command(flatten)]
    pub elements_path: ElementsPathArgs,
    #[arg(long = RELEASE.flag, help = RELEASE.help_text(), env = RELEASE.reads, value_name = "RELEASE")]
    pub release: Option<String>,
    #[arg(short = ARCH.short, long = ARCH.flag, help = ARCH.help_text(), value_name = "ARCH")]
    pub arch: Option<String>,
    #[arg(long = MIRROR.flag, help = MIRROR.help_text(), value_name = "URL")]
    pub mirror: Option<String>,
    #[arg(long = BASE.flag, help = BASE.help_text(), value_name = "METHOD", value_parser = BASE.parser::<BaseMethod>())]
    pub base: Option<BaseMethod>,
    #[arg(short = PACKAGES.short, long = PACKAGES.flag, help = PACKAGES.help_text(), value_name = "PKG,...", value_delimiter = ',')]
    pub packages: Vec<String>,
    #[arg(long = IMAGE_SIZE.flag, help = IMAGE_SIZE.help_text(), value_name = "SIZE", value_parser = IMAGE_SIZE.parser::<ByteSize>())]
    pub image_size: Option<ByteSize>,
    #[arg(long = IMAGE_EXTRA_SIZE.flag, help = IMAGE_EXTRA_SIZE.help_text(), value_name = "GB", value_parser = IMAGE_EXTRA_SIZE.parser::<ByteSize>())]
    pub image_extra_size: Option<ByteSize>,
    #[arg(long = MKFS_OPTIONS.flag, help = MKFS_OPTIONS.help_text(), value_name = "OPTIONS", allow_hyphen_values = true)]
    pub mkfs_options: Option<String>,
    #[arg(short = FORMAT.short, long = FORMAT.flag, help = FORMAT.help_text(), value_name = "FORMAT,...", value_delimiter = ',', value_parser = parse_format)]
    pub format: Vec<ImageFormat>,
    #[arg(long = QEMU_IMG_OPTIONS.flag, help = QEMU_IMG_OPTIONS.help_text(), value_name = "OPTIONS")]
    pub qemu_img_options: Option<String>,
    #[arg(long = COMPRESS.flag, help = COMPRESS.help_text(), conflicts_with = "no_compress")]
    pub compress: bool,
    #[arg(short = NO_COMPRESS.short, long = NO_COMPRESS.flag, help = NO_COMPRESS.help_text())]
    pub no_compress: bool,
    #[arg(long = COMPRESSION.flag, help = COMPRESSION.help_text(), value_name = "zlib|zstd", value_parser = COMPRESSION.parser::<Compression>())]
    pub compression: Option<Compression>,
    #[arg(long = CHECKSUM.flag, help = CHECKSUM.help_text())]
    pub checksum: bool,
    #[arg(long = MESOS_REPO.flag, help = MESOS_REPO.help_text(), value_name = "URI")]
    pub mesos_repo: Option<String>,
    #[arg(long = MESOS_REPO_KEY.flag, help = MESOS_REPO_KEY.help_text(), value_name = "FILE")]
    pub mesos_repo_key: Option<PathBuf>,
    #[arg(short = ENV.short, long = ENV.flag, help = ENV.help_text(), value_name = "KEY=VALUE", value_parser = ENV.parser::<(String, String)>())]
    pub env: Vec<(String, String)>,
    #[arg(long = CACHE_DIR.flag, help = CACHE_DIR.help_text(), value_name = "DIR", env = CACHE_DIR.reads)]
    pub cache_dir: Option<PathBuf>,
    #[arg(long = NO_CACHE.flag, help = NO_CACHE.help_text())]
    pub no_cache: bool,
    #[arg(long = LOG_FILE.flag, help = LOG_FILE.help_text(), value_name = "FILE", visible_alias = "logfile")]
    pub log_file: Option<PathBuf>,
    #[arg(long = BREAK.flag, help = BREAK.help_text(), value_name = "WHEN")]
    pub break_at: Option<BreakPoint>,
    #[arg(short = TRACE.short, help = TRACE.help_text(), action = clap::ArgAction::Count)]
    pub trace: u8,
    #[arg(long = IMAGE_CACHE.flag, help = IMAGE_CACHE.help_text(), value_name = "DIR")]
    pub image_cache: Option<PathBuf>,
    #[arg(long = ROOT_LABEL.flag, help = ROOT_LABEL.help_text(), value_name = "LABEL", value_parser = ROOT_LABEL.parser::<String>())]
    pub root_label: Option<String>,
    #[arg(long = INSTALL_TYPE.flag, help = INSTALL_TYPE.help_text(), value_name = "TYPE")]
    pub install_type: Option<String>,
    #[arg(short = SKIP_BASE.short, help = SKIP_BASE.help_text())]
    pub skip_base: bool,
    #[arg(long = OFFLINE.flag, help = OFFLINE.help_text())]
    pub offline: bool,
    #[arg(long = WORK_DIR.flag, help = WORK_DIR.help_text(), value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    #[arg(long = NO_TMPFS.flag, help = NO_TMPFS.help_text())]
    pub no_tmpfs: bool,
    #[arg(long = MIN_TMPFS.flag, help = MIN_TMPFS.help_text(), value_name = "GB", value_parser = MIN_TMPFS.parser::<u64>())]
    pub min_tmpfs: Option<u64>,
    #[arg(long = SEED.flag, help = SEED.help_text(), value_name = "TEXT")]
    pub seed: Option<String>,
    #[arg(long = SOURCE_DATE_EPOCH.flag, help = SOURCE_DATE_EPOCH.help_text(), env = SOURCE_DATE_EPOCH.reads, value_name = "SECONDS", value_parser = SOURCE_DATE_EPOCH.parser::<i64>())]
    pub source_date_epoch: Option<i64>,
    #[arg(long = CHECK_REPRODUCIBLE.flag, help = CHECK_REPRODUCIBLE.help_text(), conflicts_with = "break_at")]
    pub check_reproducible: bool,
    #[arg(long = TREE_LISTING.flag, help = TREE_LISTING.help_text(), value_name = "FILE", hide = true)]
    pub tree_listing: Option<PathBuf>,
    #[arg(long = DRY_RUN.flag, help = DRY_RUN.help_text())]
    pub dry_run: bool,
    #[arg(long = JSON.flag, help = JSON.help_text(), requires = "dry_run")]
    pub json: bool,
    /// disk-image-create's layout and log (set by its command line, not a flag).
    #[arg(skip)]
    pub layout: OutputLayout,
}

/// disk-image-create image types (`-t`) that are not built, with why.
const UNSUPPORTED_TYPES: [(&str, &str); 3] = [
    ("docker", "docker output is not built"),
    ("aci", "aci output is not built"),
    ("qcow2-compressed", "qcow2 is written compressed by default (-u to turn it off)"),
];

/// A disk-image-create flag (or `-t` image type) we refuse, as one line naming it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("disk-image-create option `{flag}` is not supported: {why}")]
pub struct UnsupportedFlag {
    pub flag: String,
    pub why: &'static str,
}

impl UnsupportedFlag {
    /// The refused image type a `-t` parse failed on, if that is what clap reports.
    pub fn in_clap_error(err: &clap::Error) -> Option<UnsupportedFlag> {
        std::error::Error::source(err)?.downcast_ref::<UnsupportedFlag>().cloned()
    }
}

/// One `-t` type: the table's parse, after disk-image-create's types that are refused naming it.
fn parse_format(text: &str) -> Result<ImageFormat, Box<dyn std::error::Error + Send + Sync>> {
    if let Some((name, why)) = UNSUPPORTED_TYPES.iter().find(|(name, _)| *name == text.trim()) {
        return Err(Box::new(UnsupportedFlag { flag: format!("-t {name}"), why }));
    }
    Ok(FORMAT.parse::<ImageFormat>(text)?)
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command};

    use super::*;

    /// Every flag of `build` is a row of the settings table, with the table's names and help,
    /// and every row is a flag: nothing is declared beside the table.
    #[test]
    fn the_build_flags_are_the_settings_table() {
        let command = BuildArgs::augment_args(Command::new("build"));
        let flags: Vec<&clap::Arg> = command.get_arguments().filter(|arg| !arg.is_positional()).collect();
        for arg in &flags {
            let setting = BUILD
                .iter()
                .find(|s| arg.get_long() == Some(s.flag) || (!s.long && arg.get_short() == s.short))
                .unwrap_or_else(|| panic!("{} is not in the settings table", arg.get_id()));
            assert_eq!(arg.get_short(), setting.short, "{}", setting.flag);
            assert_eq!(arg.get_long().is_some(), setting.long, "{}", setting.flag);
            assert_eq!(arg.get_help().map(ToString::to_string), Some(setting.help_text()), "{}", setting.flag);
            let env = arg.get_env().map(|name| name.to_string_lossy().into_owned());
            assert_eq!(env.as_deref(), setting.reads, "{}", setting.flag);
        }
        assert_eq!(flags.len(), BUILD.len(), "every row of the table is a flag of build");
    }
}
