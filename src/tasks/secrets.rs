//! Secrets in `env`: a value written `${env:NAME}` or `${file:PATH}` is read when an attempt starts, never
//! when a definition loads, so it is never part of what the store keeps; what it read is then masked as
//! `***` wherever the attempt's words go (its log, its error, its output).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::Ending;
use crate::definition::{Reference, parse_reference};

/// Values shorter than this are not masked: `***` in place of every `a` or `42` would garble every log.
pub const MIN_MASKED: usize = 4;

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// The largest secret file read: a token, a key, a certificate; more is a mistake (or `/dev/zero`).
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The values an attempt must never show, longest first.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    values: Vec<Vec<u8>>,
}

/// How many, never what: a `{:?}` in a log line or a panic message must not be the leak.
impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} value(s))", self.values.len())
    }
}

impl Secrets {
    /// Adds a value to mask; `false` (and nothing added) when it is shorter than [`MIN_MASKED`].
    pub fn add(&mut self, value: &str) -> bool {
        if value.len() < MIN_MASKED {
            return false;
        }
        let value = value.as_bytes().to_vec();
        if !self.values.contains(&value) {
            self.values.push(value);
            self.values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        }
        true
    }

    /// The length in bytes of the longest value (0 when there is none).
    pub fn longest(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every byte that is part of any value's occurrence is covered, and each covered stretch becomes one
    /// `***`: overlapping or adjacent values leave no piece of either behind, whatever order they are found in.
    pub fn mask_bytes<'a>(&self, text: &'a [u8]) -> Cow<'a, [u8]> {
        let mut covered: Option<Vec<bool>> = None;
        for value in &self.values {
            if value.len() > text.len() {
                continue;
            }
            for start in 0..=text.len() - value.len() {
                if text[start] == value[0] && text[start..start + value.len()] == value[..] {
                    let covered = covered.get_or_insert_with(|| vec![false; text.len()]);
                    covered[start..start + value.len()].iter_mut().for_each(|byte| *byte = true);
                }
            }
        }
        let Some(covered) = covered else { return Cow::Borrowed(text) };
        let mut masked = Vec::with_capacity(text.len());
        for (index, &byte) in text.iter().enumerate() {
            if !covered[index] {
                masked.push(byte);
            } else if index == 0 || !covered[index - 1] {
                masked.extend_from_slice(MASK.as_bytes());
            }
        }
        Cow::Owned(masked)
    }

    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.mask_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Values are whole UTF-8 strings, so what is cut out starts and ends on character boundaries.
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    /// Every string in a JSON value (keys too) masked.
    pub fn mask_json(&self, value: Value) -> Value {
        if self.is_empty() {
            return value;
        }
        match value {
            Value::String(text) => Value::String(self.mask(&text).into_owned()),
            Value::Array(items) => Value::Array(items.into_iter().map(|item| self.mask_json(item)).collect()),
            Value::Object(fields) => Value::Object(
                fields.into_iter().map(|(key, value)| (self.mask(&key).into_owned(), self.mask_json(value))).collect(),
            ),
            other => other,
        }
    }

    /// How an attempt ended, as the engine may keep and show it.
    pub fn mask_ending(&self, ending: Ending) -> Ending {
        if self.is_empty() {
            return ending;
        }
        match ending {
            Ending::Succeeded { output } => Ending::Succeeded { output: self.mask_json(output) },
            Ending::Failed { error, exit_code } => Ending::Failed { error: self.mask(&error).into_owned(), exit_code },
            Ending::AwaitingApproval { output, waiting } => {
                Ending::AwaitingApproval { output: self.mask_json(output), waiting }
            }
            Ending::Cancelled => Ending::Cancelled,
        }
    }
}

/// An attempt's environment with its references read, what to mask, and what to say in its log.
#[derive(Default)]
pub struct Resolved {
    pub env: BTreeMap<String, String>,
    pub secrets: Secrets,
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Reads the references in `env` (relative files under `workdir`); `api_key_env`, an LLM agent's key
/// variable, is looked up as its executor will (the attempt's env, then the engine's) and masked too.
/// An error names the variable and the reference, never a value.
pub fn resolve(env: &BTreeMap<String, String>, workdir: &Path, api_key_env: Option<&str>) -> Result<Resolved, String> {
    let mut resolved = Resolved::default();
    for (name, value) in env {
        let reference = parse_reference(value).map_err(|problem| format!("env {name}: {problem}"))?;
        let Some(reference) = reference else {
            resolved.env.insert(name.clone(), value.clone());
            continue;
        };
        let secret = match reference {
            Reference::Env(variable) => std::env::var(variable).map_err(|error| {
                let why = match error {
                    std::env::VarError::NotPresent => "is not set",
                    std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
                };
                format!(
                    "env {name} = \"{reference}\": the engine's environment variable {variable} {why}: set it where the engine runs"
                )
            })?,
            Reference::File(path) => read_secret_file(&workdir.join(path))
                .map_err(|why| format!("env {name} = \"{reference}\": {why}"))?,
        };
        if !resolved.secrets.add(&secret) {
            resolved.warnings.push(format!(
                "env {name} = \"{reference}\" is shorter than {MIN_MASKED} characters: it is not masked in logs"
            ));
        }
        resolved.env.insert(name.clone(), secret);
    }
    if let Some(variable) = api_key_env {
        let key = resolved.env.get(variable).cloned().or_else(|| std::env::var(variable).ok());
        if let Some(key) = key.filter(|key| !key.is_empty())
            && !resolved.secrets.add(&key)
        {
            resolved.warnings.push(format!(
                "the API key in {variable} is shorter than {MIN_MASKED} characters: it is not masked in logs"
            ));
        }
    }
    Ok(resolved)
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "{} is over {} KiB: expected a secret, not a document",
            path.display(),
            MAX_SECRET_FILE / 1024
        ));
    }
    let mut text = String::from_utf8(bytes)
        .map_err(|_| format!("{} is not UTF-8 text: expected a secret as text", path.display()))?;
    // Files written by `echo` or an editor end with a newline that is not part of the secret.
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secrets(values: &[&str]) -> Secrets {
        let mut secrets = Secrets::default();
        for value in values {
            secrets.add(value);
        }
        secrets
    }

    #[test]
    fn every_occurrence_is_masked_and_text_without_secrets_is_not_copied() {
        let secrets = secrets(&["hunter22"]);
        assert_eq!(secrets.mask("token=hunter22, again hunter22"), "token=***, again ***");
        assert!(matches!(secrets.mask("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_longest_value_wins_so_no_piece_of_it_is_left() {
        let secrets = secrets(&["abcd", "abcdefgh"]);
        assert_eq!(secrets.mask("x abcdefgh y abcd"), "x *** y ***");
    }

    #[test]
    fn overlapping_values_are_masked_as_one_stretch() {
        // Replacing `abcdef` first would leave the `x` of `xabc`, replacing `xabc` first the `def`: neither is left.
        let secrets = secrets(&["abcdef", "xabc"]);
        assert_eq!(secrets.mask("1xabcdef2"), "1***2");
        assert_eq!(secrets.mask("xabc abcdef"), "*** ***");
    }

    #[test]
    fn values_shorter_than_four_characters_are_not_masked() {
        let mut secrets = Secrets::default();
        assert!(!secrets.add("abc"));
        assert!(secrets.add("abcd"));
        assert_eq!(secrets.mask("abc abcd"), "abc ***");
    }

    #[test]
    fn json_strings_and_keys_are_masked_numbers_are_left() {
        let secrets = secrets(&["s3cr3t"]);
        let masked = secrets.mask_json(json!({"token": "Bearer s3cr3t", "s3cr3t": [1, "s3cr3t"], "n": 5}));
        assert_eq!(masked, json!({"token": "Bearer ***", "***": [1, "***"], "n": 5}));
    }

    #[test]
    fn an_ending_keeps_no_secret_in_its_error_or_output() {
        let secrets = secrets(&["s3cr3t"]);
        let failed = secrets.mask_ending(Ending::Failed { error: "denied for s3cr3t".into(), exit_code: Some(3) });
        assert_eq!(failed, Ending::Failed { error: "denied for ***".into(), exit_code: Some(3) });
        let done = secrets.mask_ending(Ending::Succeeded { output: json!(["s3cr3t"]) });
        assert_eq!(done, Ending::Succeeded { output: json!(["***"]) });
    }

    #[test]
    fn debug_output_counts_secrets_without_showing_them() {
        let shown = format!("{:?}", secrets(&["hunter22", "s3cr3t"]));
        assert_eq!(shown, "Secrets(2 value(s))");
    }

    #[test]
    fn references_are_read_from_the_environment_and_from_files_and_masked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "from-a-file\n").unwrap();
        // SAFETY: the variable's name is this test's own; no other test reads or writes it.
        unsafe { std::env::set_var("CONVEYOR_SECRETS_TEST_TOKEN", "from-the-env") };
        let env = BTreeMap::from([
            ("A".to_string(), "${env:CONVEYOR_SECRETS_TEST_TOKEN}".to_string()),
            ("B".to_string(), "${file:token}".to_string()),
            ("C".to_string(), "literal".to_string()),
        ]);
        let resolved = resolve(&env, dir.path(), None).unwrap();
        assert_eq!(resolved.env["A"], "from-the-env");
        assert_eq!(resolved.env["B"], "from-a-file", "the file's final newline is not part of it");
        assert_eq!(resolved.env["C"], "literal");
        assert_eq!(resolved.secrets.mask("from-the-env from-a-file literal"), "*** *** literal");
        assert!(resolved.warnings.is_empty());
    }

    #[test]
    fn an_unset_variable_or_a_missing_file_fails_naming_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([("T".to_string(), "${env:CONVEYOR_SECRETS_TEST_UNSET}".to_string())]);
        let error = resolve(&env, dir.path(), None).unwrap_err();
        assert_eq!(
            error,
            "env T = \"${env:CONVEYOR_SECRETS_TEST_UNSET}\": the engine's environment variable CONVEYOR_SECRETS_TEST_UNSET is not set: set it where the engine runs"
        );
        let env = BTreeMap::from([("T".to_string(), "${file:missing}".to_string())]);
        let error = resolve(&env, dir.path(), None).unwrap_err();
        assert!(error.starts_with("env T = \"${file:missing}\": cannot read "), "{error}");
    }

    #[test]
    fn a_short_secret_is_passed_on_with_a_warning_and_an_api_key_is_masked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pin"), "123").unwrap();
        let env = BTreeMap::from([
            ("PIN".to_string(), "${file:pin}".to_string()),
            ("KEY".to_string(), "sk-literal-key".to_string()),
        ]);
        let resolved = resolve(&env, dir.path(), Some("KEY")).unwrap();
        assert_eq!(resolved.env["PIN"], "123");
        assert_eq!(
            resolved.warnings,
            ["env PIN = \"${file:pin}\" is shorter than 4 characters: it is not masked in logs"]
        );
        assert_eq!(resolved.secrets.mask("key sk-literal-key pin 123"), "key *** pin 123");
    }
}
