//! `mesos-image upload`: what `glance image-create --file` does, with the record taken from the
//! image's recipe, the format from its header, and the stored data verified.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::args::{GlobalOpts, OutputFormat};
use crate::upload::connection::{self, ConnectionOptions, Id, Kind};
use crate::upload::record::{self, RecordFlags};
use crate::upload::{self as uploader, Method, Outcome, Progress, Status, Stores, UploadError, UploadJob};

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The image file (qcow2, raw, vmdk, vhd, vdi, iso: detected from its header).
    pub image: PathBuf,

    #[command(flatten)]
    pub record: RecordArgs,

    /// Replace images of the same name: upload first, then remove the old ones (yours only).
    #[arg(long)]
    pub replace: bool,
    /// Upload even where an identical image (same name and sha256) is already there; the old
    /// images of that name are then replaced, as with --replace.
    #[arg(long)]
    pub force: bool,
    /// Use interoperable import instead of a direct upload: glance-direct (stage, then import;
    /// the default) or web-download (Glance fetches --url).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "glance-direct", value_name = "METHOD")]
    pub import: Option<ImportMethod>,
    /// The URL Glance fetches the image from, with --import web-download. IMAGE is then only read
    /// to fill the record and verify what Glance stored.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Put the image into these stores of each cloud (comma-separated), through import.
    #[arg(long, value_delimiter = ',', value_name = "STORE,...", conflicts_with = "all_stores")]
    pub stores: Vec<String>,
    /// Put the image into every store of each cloud, through import.
    #[arg(long)]
    pub all_stores: bool,
    /// With --stores/--all-stores: whether one store failing fails the upload (Glance then
    /// reverts it) or only leaves that store out.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub all_stores_must_succeed: bool,
    /// Upload to every region of each cloud's catalog that has an image endpoint (instead of
    /// --os-region-name/OS_REGION_NAME, which an openrc file often sets).
    #[arg(long)]
    pub all_regions: bool,
    /// Seconds to wait for the image to become active once the data is sent.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    pub timeout: u64,
    /// Output format of the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportMethod {
    GlanceDirect,
    WebDownload,
}

/// The image record. Unset values come from the recipe, then Glance-client defaults.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Image name [default: the file name without its extension].
    #[arg(long)]
    pub name: Option<String>,
    /// Recipe whose `glance:` section fills the record [default: the one named in
    /// `<IMAGE>.manifest.json`].
    #[arg(long)]
    pub recipe: Option<String>,
    /// Must match the format detected from the file header.
    #[arg(long)]
    pub disk_format: Option<String>,
    /// [default: bare]
    #[arg(long)]
    pub container_format: Option<String>,
    /// public, private, shared or community [default: private]
    #[arg(long)]
    pub visibility: Option<String>,
    /// Minimum disk size in GiB a flavor needs to boot it.
    #[arg(long)]
    pub min_disk: Option<u64>,
    /// Minimum RAM in MiB a flavor needs to boot it.
    #[arg(long)]
    pub min_ram: Option<u64>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// An extra property KEY=VALUE (repeatable); wins over the recipe's.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// Shortcut for --property os_distro=DISTRO.
    #[arg(long)]
    pub os_distro: Option<String>,
    /// Shortcut for --property os_version=VERSION.
    #[arg(long)]
    pub os_version: Option<String>,
}

/// Keystone and Glance connection: one flag and one `OS_*` variable per row of
/// [`connection::SETTINGS`], the table clouds.yaml is read with too.
#[derive(Debug, Clone, Default)]
pub struct ConnectionArgs {
    /// Every single-valued setting given by flag or variable.
    pub options: ConnectionOptions,
    /// `--os-cloud`, each a target (with each region).
    pub clouds: Vec<String>,
    /// `--os-region-name`, each a target in each cloud.
    pub regions: Vec<String>,
    /// A view of the `--os-cacert` row, for preflight's file check.
    pub os_cacert: Option<PathBuf>,
}

impl clap::FromArgMatches for ConnectionArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ConnectionArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for row in connection::SETTINGS {
            if row.kind == Kind::Switch {
                if matches.get_flag(row.flag) {
                    self.options.set(row.id, "true");
                }
                continue;
            }
            let values: Vec<String> =
                matches.get_many::<String>(row.flag).into_iter().flatten().filter(|v| !v.is_empty()).cloned().collect();
            match row.id {
                Id::Cloud => self.clouds = values,
                Id::RegionName => self.regions = values,
                id => {
                    if let Some(value) = values.into_iter().last() {
                        self.options.set(id, value);
                    }
                }
            }
        }
        self.os_cacert = self.options.path(Id::Cacert);
        Ok(())
    }
}

impl clap::Args for ConnectionArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        connection::SETTINGS.iter().fold(cmd, |cmd, row| cmd.arg(connection_arg(row)))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// The clap argument of one row of the settings table.
fn connection_arg(row: &connection::Setting) -> clap::Arg {
    let arg = clap::Arg::new(row.flag).long(row.flag).env(row.env);
    let arg = if row.help.is_empty() { arg } else { arg.help(row.help) };
    match row.kind {
        Kind::Switch => arg.action(clap::ArgAction::SetTrue).value_parser(clap::builder::FalseyValueParser::new()),
        Kind::Secret => arg.hide_env_values(true).value_name("VALUE"),
        Kind::Path => arg.value_name("PATH").value_hint(clap::ValueHint::FilePath),
        Kind::Text if row.repeatable => arg.action(clap::ArgAction::Append).value_name("NAME"),
        Kind::Text => arg.value_name("VALUE"),
    }
}

impl RecordArgs {
    fn into_flags(self) -> RecordFlags {
        RecordFlags {
            name: self.name,
            disk_format: self.disk_format,
            container_format: self.container_format,
            visibility: self.visibility,
            min_disk: self.min_disk,
            min_ram: self.min_ram,
            tags: self.tags,
            properties: self.properties,
            os_distro: self.os_distro,
            os_version: self.os_version,
            recipe: self.recipe,
        }
    }
}

pub fn run(args: UploadArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    check_paths(&args)?;
    let flags = args.record.into_flags();
    super::preflight::upload(&args.image, &flags, args.timeout, args.connection.os_cacert.as_deref())?;
    super::input_guard::upload(args.connection.options.get(Id::Interface))?;
    std::fs::metadata(&args.image).with_context(|| format!("{}: cannot read", args.image.display()))?;
    let record = record::build_record(&args.image, &flags, &[crate::paths::builtin_recipes_dir()])?;
    let recorded = crate::upload::recorded::recorded_digests(&args.image)?;
    if let Some(recorded) = &recorded {
        tracing::info!("digests from {}: the image is sent without hashing it", recorded.manifest.display());
    }
    if let Some(recipe) = &record.recipe {
        tracing::info!("image record from recipe `{recipe}`");
    }
    let stores = match (args.all_stores, args.stores.is_empty()) {
        (true, _) => Stores::All,
        (false, false) => Stores::Named(args.stores),
        (false, true) => Stores::Default,
    };
    let job = UploadJob {
        image: args.image,
        record,
        replace: args.replace,
        force: args.force,
        method: match args.import {
            None => Method::Direct,
            Some(ImportMethod::GlanceDirect) => Method::GlanceDirect,
            Some(ImportMethod::WebDownload) => Method::WebDownload,
        },
        url: args.url,
        stores,
        all_stores_must_succeed: args.all_stores_must_succeed,
        timeout: Duration::from_secs(args.timeout),
        recorded,
    };
    let connection = args.connection;
    let regions = if args.all_regions { &[][..] } else { &connection.regions[..] };
    let targets = uploader::targets(&connection.options, &connection.clouds, regions)?;
    let progress = Bars::new(global.quiet);
    let outcomes = uploader::upload(targets, args.all_regions, &job, &progress)?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&json_result(&outcomes))?),
        OutputFormat::Table => {
            if let [only] = outcomes.as_slice() {
                if only.status == Status::Uploaded {
                    print!("{}", crate::redact::text(&properties_table(only)));
                }
            }
            print!("{}", crate::redact::text(&summary_table(&outcomes)));
        }
    }
    result_of(&outcomes)
}

/// The upload-path options that only make sense together, checked before any work.
fn check_paths(args: &UploadArgs) -> anyhow::Result<()> {
    use super::preflight::PreflightError;
    let bad =
        |culprit: &str, problem: &str| PreflightError { culprit: culprit.to_owned(), problem: problem.to_owned() };
    match (args.import, &args.url) {
        (Some(ImportMethod::WebDownload), None) => Err(bad("--import web-download", "needs --url URL"))?,
        (Some(ImportMethod::WebDownload), Some(url)) if !url.starts_with("http://") && !url.starts_with("https://") => {
            Err(bad(&format!("--url {url}"), "expected an http:// or https:// URL"))?
        }
        (Some(ImportMethod::WebDownload), Some(_)) => {}
        (_, Some(_)) => Err(bad("--url", "is only used with --import web-download"))?,
        (_, None) => {}
    }
    if let Some(store) = args.stores.iter().find(|s| s.trim().is_empty()) {
        Err(bad(&format!("--stores {}", args.stores.join(",")), &format!("has an empty store name `{store}`")))?
    }
    Ok(())
}

/// Exit non-zero when a target failed; the table already says which.
fn result_of(outcomes: &[Outcome]) -> anyhow::Result<()> {
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| matches!(o.status, Status::Failed(_))).collect();
    if crate::sandbox::interrupted() {
        return Err(UploadError::Interrupted.into());
    }
    match failed.as_slice() {
        [] => Ok(()),
        [only] if outcomes.len() == 1 => match &only.status {
            Status::Failed(why) => Err(anyhow::anyhow!("{why}")),
            _ => Ok(()),
        },
        _ => Err(UploadError::TargetsFailed {
            failed: failed.len(),
            total: outcomes.len(),
            names: failed.iter().map(|o| o.target.as_str()).collect::<Vec<_>>().join(", "),
        }
        .into()),
    }
}

/// A bar per target on a terminal; one line per target when it ends otherwise.
struct Bars {
    multi: Option<MultiProgress>,
    quiet: bool,
}

impl Bars {
    fn new(quiet: bool) -> Bars {
        let multi = (!quiet && std::io::stderr().is_terminal()).then(MultiProgress::new);
        Bars { multi, quiet }
    }
}

impl Progress for Bars {
    fn bar(&self, label: &str, total: u64) -> ProgressBar {
        let Some(multi) = &self.multi else { return ProgressBar::hidden() };
        let bar = multi.add(ProgressBar::new(total));
        // The template is a constant; a bad one would be a bug caught by the tests, not user input.
        if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_owned());
        bar
    }

    fn done(&self, outcome: &Outcome) {
        if self.quiet {
            return;
        }
        let line = crate::redact::text(&format!("{}: {}", outcome.target, status_text(outcome)));
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

/// The upload bar; a constant, so the test below checks the very template the bar uses.
const BAR_TEMPLATE: &str = "{prefix:20} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";

fn status_text(outcome: &Outcome) -> String {
    match &outcome.status {
        Status::Uploaded => {
            let how = outcome.method.map_or("", method_name);
            let stores = outcome.image.as_ref().and_then(|i| i.str("stores")).unwrap_or_default();
            match (how, stores.contains(',')) {
                (_, true) => format!("uploaded ({how}; stores {stores})"),
                _ => format!("uploaded ({how})"),
            }
        }
        Status::Skipped(id) => format!("skipped: identical image {id} is there"),
        Status::Failed(why) => format!("failed: {why}"),
    }
}

/// target, image id, status, seconds, MiB/s: one row per target.
fn summary_table(outcomes: &[Outcome]) -> String {
    let mut rows = vec![["TARGET".to_owned(), "IMAGE".into(), "STATUS".into(), "SECONDS".into(), "MIB/S".into()]];
    for outcome in outcomes {
        rows.push([
            outcome.target.clone(),
            outcome.image_id().unwrap_or("-").to_owned(),
            status_text(outcome),
            format!("{:.1}", outcome.seconds),
            outcome.mib_per_second().map_or("-".to_owned(), |r| format!("{r:.1}")),
        ]);
    }
    let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {:>w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The JSON result: one target gives its image record (as `glance image-show`), several a list.
fn json_result(outcomes: &[Outcome]) -> serde_json::Value {
    let entry = |o: &Outcome| {
        serde_json::json!({
            "target": o.target,
            "status": match &o.status { Status::Uploaded => "uploaded", Status::Skipped(_) => "skipped", Status::Failed(_) => "failed" },
            "error": match &o.status { Status::Failed(why) => Some(why.clone()), _ => None },
            "seconds": o.seconds,
            "mib_per_second": o.mib_per_second(),
            "image": o.image,
        })
    };
    match outcomes {
        [only] => only.image.as_ref().map_or_else(|| entry(only), |image| serde_json::json!(image)),
        _ => serde_json::Value::Array(outcomes.iter().map(entry).collect()),
    }
}

/// `id` first, then every property in name order; links and schema omitted.
fn properties_table(outcome: &Outcome) -> String {
    let Some(image) = &outcome.image else { return String::new() };
    let mut rows: Vec<(String, String)> = image
        .0
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "self" | "file" | "schema"))
        .map(|(key, value)| (key.clone(), display_value(value)))
        .collect();
    rows.sort();
    if let Some(method) = outcome.method {
        rows.push(("upload_method".to_owned(), method_name(method).to_owned()));
    }
    if !outcome.replaced.is_empty() {
        rows.push(("replaced".to_owned(), outcome.replaced.join(", ")));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{}\n", image.id());
    for (key, value) in rows {
        out.push_str(&format!("{key:<width$}  {value}\n"));
    }
    out
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Direct => "direct",
        Method::GlanceDirect => "glance-direct import",
        Method::WebDownload => "web-download import",
    }
}

fn display_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Array(items) => items.iter().map(display_value).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::glance::Image;
    use serde_json::json;

    #[test]
    fn the_table_starts_with_the_id_and_hides_links() {
        let image = Image(
            json!({"id": "abc", "name": "u", "tags": ["a", "b"], "self": "/v2/images/abc", "min_ram": 0})
                .as_object()
                .unwrap()
                .clone(),
        );
        let outcome = Outcome {
            target: "-/R1".into(),
            status: Status::Uploaded,
            image: Some(image),
            method: Some(Method::Direct),
            replaced: vec![],
            seconds: 2.0,
            bytes_sent: 4 << 20,
        };
        let out = properties_table(&outcome);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "abc");
        assert!(out.contains("tags           a, b"), "{out}");
        assert!(!out.contains("/v2/images"), "{out}");
        assert!(out.contains("upload_method  direct"), "{out}");
        let failed = Outcome {
            target: "c2/R2".into(),
            status: Status::Failed("HTTP 503".into()),
            image: None,
            ..outcome.clone()
        };
        let summary = summary_table(&[outcome, failed]);
        let lines: Vec<&str> = summary.lines().collect();
        assert!(lines[0].starts_with("TARGET") && lines[0].ends_with("MIB/S"), "{summary}");
        assert!(lines[1].starts_with("-/R1") && lines[1].contains("abc") && lines[1].ends_with("2.0"), "{summary}");
        assert!(lines[2].contains("failed: HTTP 503") && lines[2].ends_with("-"), "{summary}");
    }

    #[test]
    fn the_progress_template_is_valid() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }
}

#[cfg(test)]
mod args_tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        upload: UploadArgs,
    }

    fn parse(args: &[&str]) -> UploadArgs {
        Wrapper::try_parse_from(std::iter::once("upload").chain(args.iter().copied())).unwrap().upload
    }

    #[test]
    fn targets_and_settings_come_from_the_one_table() {
        let args = parse(&[
            "--os-cloud",
            "a",
            "--os-cloud",
            "b",
            "--os-region-name",
            "R1",
            "--os-auth-url",
            "http://k",
            "--insecure",
            "x.raw",
        ]);
        assert_eq!(args.connection.clouds, ["a", "b"]);
        assert_eq!(args.connection.regions, ["R1"]);
        assert_eq!(args.connection.options.get(Id::AuthUrl), Some("http://k"));
        assert!(args.connection.options.switch(Id::Insecure));
        assert_eq!(args.connection.options.get(Id::Cloud), None, "clouds are targets, not a setting");
    }

    #[test]
    fn server_side_paths_are_checked_before_any_work() {
        let err = check_paths(&parse(&["--import", "web-download", "x.raw"])).unwrap_err().to_string();
        assert_eq!(err, "--import web-download: needs --url URL");
        let err = check_paths(&parse(&["--url", "http://h/i", "x.raw"])).unwrap_err().to_string();
        assert!(err.contains("only used with --import web-download"), "{err}");
        let err = check_paths(&parse(&["--import", "web-download", "--url", "ftp://h/i", "x.raw"])).unwrap_err();
        assert!(err.to_string().contains("--url ftp://h/i"), "{err}");
        assert!(check_paths(&parse(&["--import", "web-download", "--url", "https://h/i", "x.raw"])).is_ok());
        assert_eq!(parse(&["--import", "--name", "n", "x.raw"]).import, Some(ImportMethod::GlanceDirect));
        assert_eq!(parse(&["--stores", "a,b", "x.raw"]).stores, ["a", "b"]);
        assert!(Wrapper::try_parse_from(["upload", "--stores", "a", "--all-stores", "x.raw"]).is_err());
    }
}
