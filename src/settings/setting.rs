//! One row of the settings table: what a setting is called where, what kind of value it takes
//! and how that is checked. The rows themselves are in `mod.rs`; the typed parse in `parse.rs`.

use super::size::ByteSize;

/// The sizes a `Value::Size` setting accepts: `Err(why)` for a number of bytes out of range.
pub type Range = fn(u64) -> Result<(), String>;

/// A rule text values of a setting must follow, beyond their kind (`Err(why)` when broken).
pub type Check = fn(&str) -> Result<(), String>;

/// How a setting's value is parsed.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// Present or not.
    Switch,
    /// Repeatable switch, counted.
    Count,
    Text,
    Path,
    /// Comma-separated and repeatable.
    List,
    /// Bytes ([`ByteSize`]): a bare number is GB as disk-image-create reads it, or 4G, 2560M;
    /// a bare number outside the range is refused as it is read.
    Size(Range),
    /// A whole number, 0 or more.
    Number,
    /// One of a fixed set of names.
    Choice(&'static [&'static str]),
    /// `KEY=VALUE`, KEY a shell variable name; repeatable.
    Assignment,
}

impl Value {
    pub(super) fn describe(self) -> String {
        match self {
            Value::Switch => "switch".to_owned(),
            Value::Count => "switch, repeatable".to_owned(),
            Value::Text => "text".to_owned(),
            Value::Path => "path".to_owned(),
            Value::List => "list (comma-separated, repeatable)".to_owned(),
            Value::Size(_) => "size in bytes (bare number: GB)".to_owned(),
            Value::Number => "whole number".to_owned(),
            Value::Choice(names) => names.join(" \\| "),
            Value::Assignment => "KEY=VALUE, repeatable".to_owned(),
        }
    }
}

/// One build setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The long flag, without its dashes (the setting's name when it has no long flag).
    pub flag: &'static str,
    /// Whether `--flag` exists, or only the short one (disk-image-create's `-x`, `-n`).
    pub long: bool,
    pub short: Option<char>,
    /// Read from the environment when the flag is absent.
    pub reads: Option<&'static str>,
    /// Handed to element scripts, as disk-image-create exports it.
    pub exports: Option<&'static str>,
    /// Where a recipe sets it (`image.size` is `size:` under `image:`).
    pub recipe_key: Option<&'static str>,
    pub value: Value,
    /// A further rule on the text (a root label's length), checked wherever the value is read.
    pub check: Option<Check>,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

impl Setting {
    pub(super) const fn new(flag: &'static str, value: Value, help: &'static str) -> Setting {
        Setting {
            flag,
            long: true,
            short: None,
            reads: None,
            exports: None,
            recipe_key: None,
            value,
            check: None,
            default: None,
            help,
        }
    }
    pub(super) const fn short(self, short: char) -> Setting {
        Setting { short: Some(short), ..self }
    }
    pub(super) const fn short_only(self) -> Setting {
        Setting { long: false, ..self }
    }
    pub(super) const fn reads(self, variable: &'static str) -> Setting {
        Setting { reads: Some(variable), ..self }
    }
    pub(super) const fn exports(self, variable: &'static str) -> Setting {
        Setting { exports: Some(variable), ..self }
    }
    pub(super) const fn recipe(self, key: &'static str) -> Setting {
        Setting { recipe_key: Some(key), ..self }
    }
    pub(super) const fn default(self, default: &'static str) -> Setting {
        Setting { default: Some(default), ..self }
    }
    pub(super) const fn check(self, check: Check) -> Setting {
        Setting { check: Some(check), ..self }
    }

    /// The help clap prints: the text, then the default.
    pub fn help_text(&self) -> String {
        match self.default {
            Some(default) => format!("{} [default: {default}]", self.help),
            None => self.help.to_owned(),
        }
    }

    /// Whether `size` is within this size setting's range. A bare number is checked as it is
    /// parsed; one with a unit is checked here, once it is known where it came from.
    pub fn check_size(&self, size: &ByteSize) -> Result<(), String> {
        match self.value {
            Value::Size(range) => range(size.bytes()),
            _ => Ok(()),
        }
    }

    /// `--image-size`, as messages name it.
    pub fn option(&self) -> String {
        format!("--{}", self.flag)
    }
}
