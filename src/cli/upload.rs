//! `mesos-image upload`: what `glance image-create --file` does, with the record taken from the
//! image's recipe, the format from its header, and the stored data verified.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::args::{GlobalOpts, OutputFormat};
use crate::upload::auth::{ConnectionOptions, Secret};
use crate::upload::record::{self, RecordFlags};
use crate::upload::{self as uploader, Method, UploadJob, Uploaded};

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The image file (qcow2, raw, vmdk, vhd, vdi, iso: detected from its header).
    pub image: PathBuf,

    #[command(flatten)]
    pub record: RecordArgs,

    /// Replace images of the same name: upload first, then remove the old ones (yours only).
    #[arg(long)]
    pub replace: bool,
    /// Use interoperable import (stage + glance-direct) instead of a direct upload.
    #[arg(long)]
    pub import: bool,
    /// Seconds to wait for the image to become active once the data is sent.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    pub timeout: u64,
    /// Output format of the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,

    #[command(flatten)]
    pub connection: ConnectionArgs,
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

/// Keystone and Glance connection, as python-openstackclient names it.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Cloud in clouds.yaml (+ secure.yaml) to take unset settings from.
    #[arg(long, env = "OS_CLOUD")]
    pub os_cloud: Option<String>,
    #[arg(long, env = "OS_AUTH_URL")]
    pub os_auth_url: Option<String>,
    /// password, token or v3applicationcredential [default: from what is set]
    #[arg(long, env = "OS_AUTH_TYPE")]
    pub os_auth_type: Option<String>,
    #[arg(long, env = "OS_USERNAME")]
    pub os_username: Option<String>,
    #[arg(long, env = "OS_USER_ID")]
    pub os_user_id: Option<String>,
    #[arg(long, env = "OS_PASSWORD", hide_env_values = true)]
    pub os_password: Option<String>,
    #[arg(long, env = "OS_USER_DOMAIN_NAME")]
    pub os_user_domain_name: Option<String>,
    #[arg(long, env = "OS_USER_DOMAIN_ID")]
    pub os_user_domain_id: Option<String>,
    #[arg(long, env = "OS_PROJECT_NAME")]
    pub os_project_name: Option<String>,
    #[arg(long, env = "OS_PROJECT_ID")]
    pub os_project_id: Option<String>,
    #[arg(long, env = "OS_PROJECT_DOMAIN_NAME")]
    pub os_project_domain_name: Option<String>,
    #[arg(long, env = "OS_PROJECT_DOMAIN_ID")]
    pub os_project_domain_id: Option<String>,
    #[arg(long, env = "OS_DOMAIN_NAME")]
    pub os_domain_name: Option<String>,
    #[arg(long, env = "OS_DOMAIN_ID")]
    pub os_domain_id: Option<String>,
    #[arg(long, env = "OS_TOKEN", hide_env_values = true)]
    pub os_token: Option<String>,
    #[arg(long, env = "OS_APPLICATION_CREDENTIAL_ID")]
    pub os_application_credential_id: Option<String>,
    #[arg(long, env = "OS_APPLICATION_CREDENTIAL_NAME")]
    pub os_application_credential_name: Option<String>,
    #[arg(long, env = "OS_APPLICATION_CREDENTIAL_SECRET", hide_env_values = true)]
    pub os_application_credential_secret: Option<String>,
    #[arg(long, env = "OS_REGION_NAME")]
    pub os_region_name: Option<String>,
    /// public, internal or admin [default: public]
    #[arg(long, env = "OS_INTERFACE")]
    pub os_interface: Option<String>,
    /// Glance URL to use instead of the catalog's.
    #[arg(long, env = "OS_IMAGE_URL")]
    pub os_image_url: Option<String>,
    /// Extra CA certificates (PEM bundle) to trust.
    #[arg(long, env = "OS_CACERT")]
    pub os_cacert: Option<PathBuf>,
    /// Do not verify server certificates.
    #[arg(long, env = "OS_INSECURE", value_parser = clap::builder::FalseyValueParser::new())]
    pub insecure: bool,
}

impl ConnectionArgs {
    fn into_options(self) -> ConnectionOptions {
        let secret = |value: Option<String>| value.filter(|v| !v.is_empty()).map(Secret::new);
        let set = |value: Option<String>| value.filter(|v| !v.is_empty());
        ConnectionOptions {
            cloud: set(self.os_cloud),
            auth_url: set(self.os_auth_url),
            auth_type: set(self.os_auth_type),
            username: set(self.os_username),
            user_id: set(self.os_user_id),
            password: secret(self.os_password),
            user_domain_name: set(self.os_user_domain_name),
            user_domain_id: set(self.os_user_domain_id),
            project_name: set(self.os_project_name),
            project_id: set(self.os_project_id),
            project_domain_name: set(self.os_project_domain_name),
            project_domain_id: set(self.os_project_domain_id),
            domain_name: set(self.os_domain_name),
            domain_id: set(self.os_domain_id),
            token: secret(self.os_token),
            application_credential_id: set(self.os_application_credential_id),
            application_credential_name: set(self.os_application_credential_name),
            application_credential_secret: secret(self.os_application_credential_secret),
            region_name: set(self.os_region_name),
            interface: set(self.os_interface),
            image_url: set(self.os_image_url),
            cacert: self.os_cacert.filter(|p| !p.as_os_str().is_empty()),
            insecure: self.insecure,
        }
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
    let flags = args.record.into_flags();
    super::preflight::upload(&args.image, &flags, args.timeout, args.connection.os_cacert.as_deref())?;
    super::input_guard::upload(args.connection.os_interface.as_deref())?;
    let size = std::fs::metadata(&args.image).with_context(|| format!("{}: cannot read", args.image.display()))?.len();
    let record = record::build_record(&args.image, &flags, &[crate::paths::builtin_recipes_dir()])?;
    if let Some(recipe) = &record.recipe {
        tracing::info!("image record from recipe `{recipe}`");
    }
    let job = UploadJob {
        image: args.image,
        record,
        replace: args.replace,
        method: if args.import { Method::Import } else { Method::Direct },
        timeout: Duration::from_secs(args.timeout),
    };
    let bar = progress_bar(size, global.quiet);
    let uploaded = uploader::upload(&args.connection.into_options(), &job, &bar)?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&uploaded.image)?),
        OutputFormat::Table => print!("{}", table(&uploaded)),
    }
    Ok(())
}

/// The upload bar; a constant, so the test below checks the very template the bar uses.
const BAR_TEMPLATE: &str = "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";

fn progress_bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    // The template is a constant; a bad one would be a bug caught by the tests, not user input.
    if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
        bar.set_style(style);
    }
    bar
}

/// `id` first, then every property in name order; links and schema omitted.
fn table(uploaded: &Uploaded) -> String {
    let image = &uploaded.image;
    let mut rows: Vec<(String, String)> = image
        .0
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "self" | "file" | "schema"))
        .map(|(key, value)| (key.clone(), display_value(value)))
        .collect();
    rows.sort();
    rows.push(("upload_method".to_owned(), method_name(uploaded.method).to_owned()));
    if !uploaded.replaced.is_empty() {
        rows.push(("replaced".to_owned(), uploaded.replaced.join(", ")));
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
        Method::Import => "glance-direct import",
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
        let out = table(&Uploaded { image, method: Method::Direct, replaced: vec![] });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "abc");
        assert!(out.contains("tags           a, b"), "{out}");
        assert!(!out.contains("/v2/images"), "{out}");
        assert!(out.contains("upload_method  direct"), "{out}");
    }

    #[test]
    fn the_progress_template_is_valid() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }
}
