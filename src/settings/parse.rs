//! The typed parse of a setting, read from its row of the table: its kind (`Value`) and its rule
//! (`check`) turn the text into the value. clap's value parser for the flag (and so for the
//! variable clap reads in its place), the recipe reader's key and any later check call this one
//! function, so a value means the same, and is refused with the same words, wherever it is given.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::setting::{Setting, Value};
use super::size::ByteSize;

/// A type a setting's text is parsed into, by the setting's row.
pub trait FromSetting: Sized + Clone + Send + Sync + 'static {
    fn from_setting(setting: &Setting, text: &str) -> Result<Self, String>;
}

impl Setting {
    /// `text` as this setting's typed value, or why not.
    pub fn parse<T: FromSetting>(&self, text: &str) -> Result<T, String> {
        if let Some(check) = self.check {
            check(text)?;
        }
        T::from_setting(self, text)
    }

    /// The parse as clap's `value_parser` (`value_parser = IMAGE_SIZE.parser::<ByteSize>()`).
    pub fn parser<T: FromSetting>(&'static self) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
        move |text| self.parse(text)
    }

    /// A recipe's value for this setting (a string or a number), by the same parse; the
    /// message names the recipe key, the reader adds file and line.
    pub fn deserialize<'de, D: Deserializer<'de>, T: FromSetting>(&self, deserializer: D) -> Result<T, D::Error> {
        let text = deserializer.deserialize_any(ScalarText)?;
        self.parse(&text).map_err(|problem| de::Error::custom(format!("{}: {problem}", self.recipe_name())))
    }

    /// A recipe's list for this setting, each item by the same parse.
    pub fn deserialize_list<'de, D: Deserializer<'de>, T: FromSetting>(
        &self,
        deserializer: D,
    ) -> Result<Vec<T>, D::Error> {
        let texts = deserializer.deserialize_seq(ScalarList)?;
        let parse = |text: &String| {
            self.parse(text).map_err(|problem| de::Error::custom(format!("{}: {problem}", self.recipe_name())))
        };
        texts.iter().map(parse).collect()
    }

    /// The key's last part: the reader's message already names the sections around it.
    fn recipe_name(&self) -> &'static str {
        let key = self.recipe_key.unwrap_or(self.flag);
        key.rsplit('.').next().unwrap_or(key)
    }

    fn kind_mismatch(&self, wanted: &str) -> String {
        format!(
            "{} is declared as {:?}, not as {wanted} (the settings table and the field disagree)",
            self.option(),
            self.value
        )
    }
}

impl FromSetting for ByteSize {
    fn from_setting(setting: &Setting, text: &str) -> Result<ByteSize, String> {
        match setting.value {
            Value::Size(range) => ByteSize::parse_gigabytes(text, range),
            _ => Err(setting.kind_mismatch("a size")),
        }
    }
}

impl FromSetting for String {
    fn from_setting(_: &Setting, text: &str) -> Result<String, String> {
        Ok(text.to_owned())
    }
}

impl FromSetting for u64 {
    fn from_setting(setting: &Setting, text: &str) -> Result<u64, String> {
        match setting.value {
            Value::Number => text.trim().parse().map_err(|_| {
                // Given through the variable clap reads, the flag alone would not name it.
                let variable = setting.reads.map(|name| format!("{name} ")).unwrap_or_default();
                format!("{variable}`{text}` is not a whole number (0 or more)")
            }),
            _ => Err(setting.kind_mismatch("a number")),
        }
    }
}

impl FromSetting for i64 {
    fn from_setting(setting: &Setting, text: &str) -> Result<i64, String> {
        let whole = u64::from_setting(setting, text)?;
        i64::try_from(whole).map_err(|_| format!("`{text}` is too large"))
    }
}

impl FromSetting for (String, String) {
    fn from_setting(setting: &Setting, text: &str) -> Result<(String, String), String> {
        if !matches!(setting.value, Value::Assignment) {
            return Err(setting.kind_mismatch("KEY=VALUE"));
        }
        let (key, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`{key}` is not a valid variable name"));
        }
        Ok((key.to_owned(), value.to_owned()))
    }
}

/// A YAML/JSON scalar as its text: recipes may write `size: 4` or `size: "4G"`.
struct ScalarText;

impl Visitor<'_> for ScalarText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A sequence of scalars, each as its text.
struct ScalarList;

impl<'de> Visitor<'de> for ScalarList {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ScalarSeed)? {
            items.push(item);
        }
        Ok(items)
    }
}

struct ScalarSeed;

impl<'de> de::DeserializeSeed<'de> for ScalarSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(ScalarText)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{IMAGE_EXTRA_SIZE, IMAGE_SIZE, MIN_TMPFS, ROOT_LABEL, SOURCE_DATE_EPOCH};
    use super::*;

    #[test]
    fn sizes_parse_by_their_row() {
        let size: ByteSize = IMAGE_SIZE.parse("1.5").unwrap();
        assert_eq!((size.bytes(), size.as_str()), (1536 << 20, "1536M"));
        assert_eq!(
            IMAGE_SIZE.parse::<ByteSize>("0.01").unwrap_err(),
            "`0.01` GB: out of range: a disk is between 64M and 16T"
        );
        // The extra size has its own range: 1 MiB is fine there.
        assert_eq!(IMAGE_EXTRA_SIZE.parse::<ByteSize>("1M").unwrap().bytes(), 1 << 20);
        assert!(MIN_TMPFS.parse::<ByteSize>("1").unwrap_err().contains("not as a size"));
    }

    #[test]
    fn checks_and_numbers_name_the_value() {
        assert_eq!(ROOT_LABEL.parse::<String>("cloudimg-rootfs").unwrap(), "cloudimg-rootfs");
        assert!(ROOT_LABEL.parse::<String>("seventeen-bytes-x").unwrap_err().contains("not an ext4 label"));
        assert_eq!(MIN_TMPFS.parse::<u64>(" 6 ").unwrap(), 6);
        assert_eq!(
            SOURCE_DATE_EPOCH.parse::<i64>("-1").unwrap_err(),
            "SOURCE_DATE_EPOCH `-1` is not a whole number (0 or more)"
        );
        assert_eq!(MIN_TMPFS.parse::<u64>("lots").unwrap_err(), "`lots` is not a whole number (0 or more)");
        assert_eq!(SOURCE_DATE_EPOCH.parse::<i64>(" 1700000000 ").unwrap(), 1_700_000_000);
        assert!(SOURCE_DATE_EPOCH.parse::<i64>("yesterday").unwrap_err().contains("`yesterday`"));
    }

    #[test]
    fn recipe_values_may_be_numbers_and_errors_name_the_key() {
        let mut yaml = serde_json::Deserializer::from_str("2");
        let size: ByteSize = IMAGE_SIZE.deserialize(&mut yaml).unwrap();
        assert_eq!(size.bytes(), 2 << 30);
        let mut yaml = serde_json::Deserializer::from_str("\"big\"");
        let err = IMAGE_SIZE.deserialize::<_, ByteSize>(&mut yaml).unwrap_err().to_string();
        assert!(err.starts_with("size: `big` is not a size"), "{err}");
    }
}
