//! Where a password, token or key comes from: a variable (`env:NAME`) or a
//! file (`file:/path`, e.g. a mounted Kubernetes Secret), never the
//! configuration itself, so that no value, log or `--help` holds one. A file
//! is read again whenever its contents are asked for: a rotated Secret is
//! picked up by whoever asks again (which parts do is in docs/deploy.md).

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecretSource {
    /// No secret (`""`).
    #[default]
    Unset,
    /// `env:NAME`: the variable NAME.
    Env(String),
    /// `file:PATH`: the file's contents, without the trailing line break.
    File(PathBuf),
}

impl TryFrom<String> for SecretSource {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Ok(SecretSource::Unset);
        }
        if let Some(name) = s.strip_prefix("env:").filter(|n| !n.is_empty()) {
            return Ok(SecretSource::Env(name.to_owned()));
        }
        if let Some(path) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
            return Ok(SecretSource::File(PathBuf::from(path)));
        }
        // The value is not repeated: it may be the secret itself.
        Err("a secret is named, never written here: \"env:VARIABLE\" or \"file:/path/to/file\"".into())
    }
}

impl From<SecretSource> for String {
    fn from(s: SecretSource) -> String {
        s.to_string()
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Unset => Ok(()),
            SecretSource::Env(name) => write!(f, "env:{name}"),
            SecretSource::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl SecretSource {
    pub fn is_set(&self) -> bool {
        *self != SecretSource::Unset
    }

    /// The secret now (`None` when unset). `key` is the configuration key, for
    /// the error, which names the variable or file and never a value.
    pub fn read(&self, key: &str) -> anyhow::Result<Option<SecretString>> {
        let value = match self {
            SecretSource::Unset => return Ok(None),
            SecretSource::Env(name) => std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .with_context(|| format!("{key} is read from ${name}, which is not set"))?,
            SecretSource::File(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("{key} is read from {}, which cannot be read", path.display())
                })?;
                // `echo secret > file` and `kubectl create secret --from-file` differ by a line break.
                text.trim_end_matches(['\r', '\n']).to_owned()
            }
        };
        if value.is_empty() {
            bail!("{key} is read from {self}, which is empty");
        }
        Ok(Some(value.into()))
    }
}

/// The value a `*_env` key names (the pollers' credentials, the embedding
/// API key): the variable NAME, or with `file:PATH` the file's contents (a
/// mounted Secret, read at each call) without the trailing line break.
/// `None` when unset, unreadable or empty.
pub fn named_value(name: &str) -> Option<String> {
    let value = match name.strip_prefix("file:") {
        Some(path) => std::fs::read_to_string(path).ok()?.trim_end_matches(['\r', '\n']).to_owned(),
        None => std::env::var(name).ok()?,
    };
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn sources_parse_and_a_written_secret_is_refused_without_echoing_it() {
        let parse = |s: &str| SecretSource::try_from(s.to_owned());
        assert_eq!(parse(""), Ok(SecretSource::Unset));
        assert_eq!(parse("env:PGPASSWORD"), Ok(SecretSource::Env("PGPASSWORD".into())));
        assert_eq!(parse("file:/run/secrets/pg"), Ok(SecretSource::File("/run/secrets/pg".into())));
        for bad in ["hunter2", "env:", "file:"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("env:VARIABLE") && !e.contains("hunter2"), "{bad}: {e}");
        }
        assert_eq!(String::from(parse("file:/a").unwrap()), "file:/a");
    }

    #[test]
    fn a_file_is_read_again_each_time_and_errors_name_the_source_not_the_value() {
        let dir = std::env::temp_dir().join(format!("apex-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("password");
        let source = SecretSource::File(path.clone());
        let e = source.read("postgres.password").unwrap_err().to_string();
        assert!(e.contains("postgres.password") && e.contains(&path.display().to_string()), "{e}");

        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(source.read("k").unwrap().unwrap().expose_secret(), "first");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(source.read("k").unwrap().unwrap().expose_secret(), "second");
        std::fs::write(&path, "\n").unwrap();
        let e = source.read("k").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");

        let e = SecretSource::Env("APEX_SECRET_TEST_UNSET".into()).read("redis.password").unwrap_err();
        assert!(e.to_string().contains("$APEX_SECRET_TEST_UNSET"), "{e}");
        assert_eq!(SecretSource::Unset.read("k").unwrap().map(|s| s.expose_secret().to_owned()), None);

        // A `*_env` key may name a file as well as a variable.
        std::fs::write(&path, "token\n").unwrap();
        assert_eq!(named_value(&format!("file:{}", path.display())).as_deref(), Some("token"));
        assert_eq!(named_value(&format!("file:{}", dir.join("missing").display())), None);
        assert_eq!(named_value("APEX_SECRET_TEST_UNSET"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
