//! A secret's place written in a definition's `env` (`${env:NAME}`, `${file:PATH}`): checked when the
//! definition loads, read only when an attempt starts (`tasks::secrets`).

/// An `env` value that names where its value is, rather than being it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference<'a> {
    /// `${env:NAME}`: the engine's own environment variable.
    Env(&'a str),
    /// `${file:PATH}`: a file's text, without its final newline; a relative path is under the workflows folder.
    File(&'a str),
}

impl std::fmt::Display for Reference<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Env(name) => write!(f, "${{env:{name}}}"),
            Reference::File(path) => write!(f, "${{file:{path}}}"),
        }
    }
}

/// `Ok(None)` for a literal value; `Err` says what a value starting with `${` should have been.
pub fn parse_reference(value: &str) -> Result<Option<Reference<'_>>, String> {
    let Some(rest) = value.strip_prefix("${") else { return Ok(None) };
    let expected = "expected `${env:NAME}` or `${file:PATH}` as the whole value";
    let Some(body) = rest.strip_suffix('}') else {
        return Err(format!("bad secret reference `{value}`: {expected}"));
    };
    if let Some(name) = body.strip_prefix("env:") {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "bad secret reference `{value}`: expected an environment variable name (letters, digits, `_`) after `env:`"
            ));
        }
        return Ok(Some(Reference::Env(name)));
    }
    if let Some(path) = body.strip_prefix("file:") {
        if path.is_empty() || path.contains('\0') {
            return Err(format!("bad secret reference `{value}`: expected a file path after `file:`"));
        }
        return Ok(Some(Reference::File(path)));
    }
    Err(format!("bad secret reference `{value}`: {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_whole_values_naming_a_variable_or_a_file() {
        assert_eq!(parse_reference("plain"), Ok(None));
        assert_eq!(parse_reference("a ${env:X}"), Ok(None), "a reference is the whole value");
        assert_eq!(parse_reference("${env:API_TOKEN}"), Ok(Some(Reference::Env("API_TOKEN"))));
        assert_eq!(parse_reference("${file:/run/secrets/t}"), Ok(Some(Reference::File("/run/secrets/t"))));
        for bad in ["${env:}", "${env:A-B}", "${file:}", "${vault:x}", "${env:X", "${env:X} tail"] {
            let error = parse_reference(bad).unwrap_err();
            assert!(error.starts_with(&format!("bad secret reference `{bad}`: expected")), "{error}");
        }
    }
}
