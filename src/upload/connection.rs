//! The OpenStack connection settings, declared once: [`SETTINGS`] says for each its flag, its
//! `OS_*` variable, where clouds.yaml keeps it, whether it is a secret, and its help text. clap
//! (cli/upload.rs), the clouds.yaml reader ([`ConnectionOptions::fill_from`]) and Keystone auth
//! (auth.rs, through [`ConnectionOptions::get`]) all read this one table.
//!
//! Precedence is python-openstackclient's: flag, then `OS_*` variable (clap reads both), then the
//! `--os-cloud` entry of clouds.yaml/secure.yaml.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::clouds::{self, CloudEntry, CloudsError};
use super::secret::Secret;

/// One connection setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Id {
    Cloud,
    AuthUrl,
    AuthType,
    Username,
    UserId,
    Password,
    UserDomainName,
    UserDomainId,
    ProjectName,
    ProjectId,
    ProjectDomainName,
    ProjectDomainId,
    DomainName,
    DomainId,
    Token,
    ApplicationCredentialId,
    ApplicationCredentialName,
    ApplicationCredentialSecret,
    RegionName,
    Interface,
    ImageUrl,
    Cacert,
    Insecure,
}

/// What kind of value a setting holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// Never printed: registered with `crate::redact`, hidden from `--help`'s env values.
    Secret,
    Path,
    /// A flag without a value; `OS_*` is read as a boolean.
    Switch,
}

/// Where clouds.yaml keeps a setting: keys tried in order (aliases after the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudKey {
    /// Not in a cloud entry (`--os-cloud` names the entry).
    None,
    /// Under the entry's `auth:` mapping.
    Auth(&'static [&'static str]),
    /// At the entry's top level.
    Top(&'static [&'static str]),
    /// The top-level boolean `verify`, inverted (`verify: false` means insecure).
    NotVerify,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub id: Id,
    /// The long flag, without `--`.
    pub flag: &'static str,
    pub env: &'static str,
    pub cloud: CloudKey,
    pub kind: Kind,
    /// May be given several times: one upload target per value.
    pub repeatable: bool,
    pub help: &'static str,
}

const fn row(id: Id, flag: &'static str, env: &'static str, cloud: CloudKey, help: &'static str) -> Setting {
    Setting { id, flag, env, cloud, kind: Kind::Text, repeatable: false, help }
}

const fn secret(setting: Setting) -> Setting {
    Setting { kind: Kind::Secret, ..setting }
}

const fn repeatable(setting: Setting) -> Setting {
    Setting { repeatable: true, ..setting }
}

use CloudKey::{Auth, Top};

/// Every connection setting, in `--help` order.
pub const SETTINGS: &[Setting] = &[
    repeatable(row(
        Id::Cloud,
        "os-cloud",
        "OS_CLOUD",
        CloudKey::None,
        "Cloud in clouds.yaml (+ secure.yaml) to take unset settings from; repeat for several clouds",
    )),
    row(Id::AuthUrl, "os-auth-url", "OS_AUTH_URL", Auth(&["auth_url"]), "Keystone URL"),
    row(
        Id::AuthType,
        "os-auth-type",
        "OS_AUTH_TYPE",
        Top(&["auth_type"]),
        "password, token or v3applicationcredential [default: from what is set]",
    ),
    row(Id::Username, "os-username", "OS_USERNAME", Auth(&["username"]), ""),
    row(Id::UserId, "os-user-id", "OS_USER_ID", Auth(&["user_id"]), ""),
    secret(row(Id::Password, "os-password", "OS_PASSWORD", Auth(&["password"]), "")),
    row(Id::UserDomainName, "os-user-domain-name", "OS_USER_DOMAIN_NAME", Auth(&["user_domain_name"]), ""),
    row(Id::UserDomainId, "os-user-domain-id", "OS_USER_DOMAIN_ID", Auth(&["user_domain_id"]), ""),
    row(Id::ProjectName, "os-project-name", "OS_PROJECT_NAME", Auth(&["project_name", "tenant_name"]), ""),
    row(Id::ProjectId, "os-project-id", "OS_PROJECT_ID", Auth(&["project_id", "tenant_id"]), ""),
    row(Id::ProjectDomainName, "os-project-domain-name", "OS_PROJECT_DOMAIN_NAME", Auth(&["project_domain_name"]), ""),
    row(Id::ProjectDomainId, "os-project-domain-id", "OS_PROJECT_DOMAIN_ID", Auth(&["project_domain_id"]), ""),
    row(Id::DomainName, "os-domain-name", "OS_DOMAIN_NAME", Auth(&["domain_name"]), ""),
    row(Id::DomainId, "os-domain-id", "OS_DOMAIN_ID", Auth(&["domain_id"]), ""),
    secret(row(Id::Token, "os-token", "OS_TOKEN", Auth(&["token"]), "")),
    row(
        Id::ApplicationCredentialId,
        "os-application-credential-id",
        "OS_APPLICATION_CREDENTIAL_ID",
        Auth(&["application_credential_id"]),
        "",
    ),
    row(
        Id::ApplicationCredentialName,
        "os-application-credential-name",
        "OS_APPLICATION_CREDENTIAL_NAME",
        Auth(&["application_credential_name"]),
        "",
    ),
    secret(row(
        Id::ApplicationCredentialSecret,
        "os-application-credential-secret",
        "OS_APPLICATION_CREDENTIAL_SECRET",
        Auth(&["application_credential_secret"]),
        "",
    )),
    repeatable(row(
        Id::RegionName,
        "os-region-name",
        "OS_REGION_NAME",
        Top(&["region_name"]),
        "Region whose image endpoint to use; repeat for several regions",
    )),
    row(
        Id::Interface,
        "os-interface",
        "OS_INTERFACE",
        Top(&["interface"]),
        "public, internal or admin [default: public]",
    ),
    row(
        Id::ImageUrl,
        "os-image-url",
        "OS_IMAGE_URL",
        Top(&["image_endpoint_override"]),
        "Glance URL to use instead of the catalog's",
    ),
    Setting {
        kind: Kind::Path,
        ..row(Id::Cacert, "os-cacert", "OS_CACERT", Top(&["cacert"]), "Extra CA certificates (PEM bundle) to trust")
    },
    Setting {
        kind: Kind::Switch,
        ..row(Id::Insecure, "insecure", "OS_INSECURE", CloudKey::NotVerify, "Do not verify server certificates")
    },
];

/// The table's row for `id`.
pub fn setting(id: Id) -> &'static Setting {
    // Every Id has a row: `every_id_has_one_row` below keeps it so.
    SETTINGS.iter().find(|s| s.id == id).unwrap_or(&SETTINGS[0])
}

/// The settings of one connection (one cloud, one region): each set value, by id. Secret values
/// are registered with `crate::redact` when set and masked in `Debug` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectionOptions {
    values: BTreeMap<Id, String>,
}

impl fmt::Debug for ConnectionOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.values.iter().map(|(id, value)| {
            let value = if setting(*id).kind == Kind::Secret { "***" } else { value.as_str() };
            (id, value)
        });
        f.debug_map().entries(shown).finish()
    }
}

impl ConnectionOptions {
    /// Set `id` (an empty value means unset, as python-openstackclient treats `OS_X=`).
    pub fn set(&mut self, id: Id, value: impl Into<String>) {
        let value = value.into();
        if value.is_empty() {
            self.values.remove(&id);
            return;
        }
        if setting(id).kind == Kind::Secret {
            crate::redact::register(&value);
        }
        self.values.insert(id, value);
    }

    /// `self` with `id` set: for building options in code and tests.
    pub fn with(mut self, id: Id, value: impl Into<String>) -> Self {
        self.set(id, value);
        self
    }

    pub fn get(&self, id: Id) -> Option<&str> {
        self.values.get(&id).map(String::as_str)
    }

    /// A secret setting, wrapped so it cannot be printed by accident.
    pub fn secret(&self, id: Id) -> Option<Secret> {
        self.get(id).map(Secret::new)
    }

    pub fn path(&self, id: Id) -> Option<PathBuf> {
        self.get(id).map(PathBuf::from)
    }

    /// A switch: set and not a false-ish word.
    pub fn switch(&self, id: Id) -> bool {
        self.get(id).is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"))
    }

    /// Fill every unset setting from the `--os-cloud` entry, if one is named.
    pub fn with_cloud_config(self) -> Result<ConnectionOptions, CloudsError> {
        match self.get(Id::Cloud) {
            Some(name) => {
                let entry = clouds::load(name)?;
                Ok(self.fill_from(&entry))
            }
            None => Ok(self),
        }
    }

    /// Fill every unset setting from a cloud entry, as the table says where each lives.
    pub fn fill_from(mut self, cloud: &CloudEntry) -> ConnectionOptions {
        for row in SETTINGS {
            if self.values.contains_key(&row.id) {
                continue;
            }
            let value = match row.cloud {
                CloudKey::None => None,
                Auth(keys) => keys.iter().find_map(|k| cloud.auth(k)),
                Top(keys) => keys.iter().find_map(|k| cloud.setting(k)),
                CloudKey::NotVerify => {
                    cloud.setting("verify").filter(|v| v.eq_ignore_ascii_case("false")).map(|_| "true".to_owned())
                }
            };
            if let Some(value) = value {
                self.set(row.id, value);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_has_one_row_and_flags_and_variables_are_unique() {
        let ids = [
            Id::Cloud,
            Id::AuthUrl,
            Id::AuthType,
            Id::Username,
            Id::UserId,
            Id::Password,
            Id::UserDomainName,
            Id::UserDomainId,
            Id::ProjectName,
            Id::ProjectId,
            Id::ProjectDomainName,
            Id::ProjectDomainId,
            Id::DomainName,
            Id::DomainId,
            Id::Token,
            Id::ApplicationCredentialId,
            Id::ApplicationCredentialName,
            Id::ApplicationCredentialSecret,
            Id::RegionName,
            Id::Interface,
            Id::ImageUrl,
            Id::Cacert,
            Id::Insecure,
        ];
        assert_eq!(SETTINGS.len(), ids.len());
        for id in ids {
            assert_eq!(SETTINGS.iter().filter(|s| s.id == id).count(), 1, "{id:?}");
        }
        let mut flags: Vec<&str> = SETTINGS.iter().map(|s| s.flag).collect();
        flags.sort_unstable();
        flags.dedup();
        assert_eq!(flags.len(), SETTINGS.len());
        for row in SETTINGS {
            let expected = row.flag.replace('-', "_").to_ascii_uppercase();
            assert!(row.env == expected || row.env == format!("OS_{expected}"), "{} vs {}", row.flag, row.env);
        }
    }

    #[test]
    fn flags_win_over_cloud_entries() {
        let mut cloud = CloudEntry::default();
        cloud.auth.insert("username".into(), "from-cloud".into());
        cloud.auth.insert("tenant_id".into(), "p-cloud".into());
        cloud.auth.insert("password".into(), "cloud-secret-pw".into());
        cloud.settings.insert("region_name".into(), "R2".into());
        cloud.settings.insert("verify".into(), "false".into());
        let opts = ConnectionOptions::default().with(Id::Username, "demo").fill_from(&cloud);
        assert_eq!(opts.get(Id::Username), Some("demo"));
        assert_eq!(opts.get(Id::ProjectId), Some("p-cloud"), "aliases are read");
        assert_eq!(opts.get(Id::RegionName), Some("R2"));
        assert!(opts.switch(Id::Insecure));
        let shown = format!("{opts:?}");
        assert!(!shown.contains("cloud-secret-pw") && shown.contains("R2"), "{shown}");
        assert_eq!(crate::redact::text("x cloud-secret-pw y"), "x *** y");
    }

    #[test]
    fn empty_values_are_unset_and_switches_read_booleans() {
        let opts = ConnectionOptions::default().with(Id::AuthUrl, "").with(Id::Insecure, "0");
        assert_eq!(opts.get(Id::AuthUrl), None);
        assert!(!opts.switch(Id::Insecure));
        assert!(ConnectionOptions::default().with(Id::Insecure, "true").switch(Id::Insecure));
    }
}
