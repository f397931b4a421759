//! Where the records live, as an operator writes it (`--store`, `CONVEYOR_STORE`, `store = "…"` in
//! `conveyor.toml`): the state folder's SQLite file by default, or a PostgreSQL database shared by several
//! engines. A location is shown only redacted: a password in a URL or a conninfo string never reaches a
//! message, a log line or a process listing we print.

use std::fmt;

/// A PostgreSQL database to connect to, with its text kept whole for the driver and shown redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

/// Where the records live.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StoreLocation {
    /// `conveyor.db` in the state folder (the default).
    StateFolder,
    Postgres(DatabaseUrl),
}

impl StoreLocation {
    /// Reads what an operator wrote. Empty means the default; anything else must be a PostgreSQL URL
    /// (`postgres://` or `postgresql://`) or a conninfo string (`host=… dbname=…`).
    pub fn parse(text: &str) -> Result<StoreLocation, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(StoreLocation::StateFolder);
        }
        let url = DatabaseUrl(text.to_string());
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            if text.contains(char::is_whitespace) {
                return Err(format!("store `{url}`: a URL has no spaces (percent-encode them, e.g. %20)"));
            }
            return Ok(StoreLocation::Postgres(url));
        }
        if text.split_whitespace().all(|pair| pair.split_once('=').is_some_and(|(key, _)| !key.is_empty())) {
            return Ok(StoreLocation::Postgres(url));
        }
        Err(format!(
            "store `{url}`: expected a PostgreSQL URL (`postgres://user@host/database`) or a conninfo string (`host=… dbname=…`); leave it unset for the state folder's SQLite file"
        ))
    }
}

impl DatabaseUrl {
    /// The text for the driver, password included: never for printing.
    pub fn secret_text(&self) -> &str {
        &self.0
    }

    /// Where the database is, short, for a title: `user@host:port/database` (never the password); the
    /// redacted address when it cannot be read.
    pub fn place(&self) -> String {
        super::postgres::place(&self.0).unwrap_or_else(|| redact(&self.0))
    }
}

/// The URL or conninfo with any password replaced by `***`.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

/// Redacted too: a `{:?}` in a panic or a trace must not be the leak.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", redact(&self.0))
    }
}

/// `text` without the password that `address` carries, whichever form the address has (a URL's userinfo, a
/// conninfo's `password=`, quoted or not): the password itself is found and cut wherever it appears, so a
/// driver's message that quotes the address, parsed or not, is safe to show too.
pub fn hide_password(text: &str, address: &str) -> String {
    let password = if let Some(rest) = address.split_once("://").map(|(_, rest)| rest) {
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let in_userinfo =
            authority.rsplit_once('@').and_then(|(userinfo, _)| userinfo.split_once(':')).map(|(_, password)| password);
        in_userinfo.or_else(|| {
            let query = rest.split_once('?')?.1;
            query.split('&').find_map(|pair| pair.strip_prefix("password="))
        })
    } else {
        address.split_once("password").and_then(|(_, rest)| {
            let value = rest.trim_start().strip_prefix('=')?.trim_start();
            match value.strip_prefix('\'') {
                Some(quoted) => quoted.split('\'').next(),
                None => value.split_whitespace().next(),
            }
        })
    };
    match password.filter(|password| !password.is_empty()) {
        Some(password) => text.replace(password, "***"),
        None => text.to_string(),
    }
}

fn redact(text: &str) -> String {
    hide_password(text, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        match StoreLocation::parse(text).unwrap() {
            StoreLocation::Postgres(url) => url.to_string(),
            StoreLocation::StateFolder => "state folder".into(),
        }
    }

    #[test]
    fn passwords_never_show_in_urls_or_conninfo() {
        assert_eq!(shown("postgres://app:s3cret@db.local:5432/conveyor"), "postgres://app:***@db.local:5432/conveyor");
        assert_eq!(shown("postgresql://app@db/conveyor"), "postgresql://app@db/conveyor");
        assert_eq!(shown("postgres://app:p@ss@db/c"), "postgres://app:***@db/c");
        assert_eq!(
            shown("postgres://app@db/c?sslmode=disable&password=s3cret"),
            "postgres://app@db/c?sslmode=disable&password=***"
        );
        assert_eq!(
            shown("host=/tmp/sock user=app password=s3cret dbname=c"),
            "host=/tmp/sock user=app password=*** dbname=c"
        );
        assert_eq!(shown("  "), "state folder");
        let url = match StoreLocation::parse("postgres://app:s3cret@db/c").unwrap() {
            StoreLocation::Postgres(url) => url,
            other => panic!("{other:?}"),
        };
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.secret_text(), "postgres://app:s3cret@db/c", "the driver gets it whole");
        assert_eq!(url.place(), "app@db:5432/c", "a title names the place, not the password");
    }

    #[test]
    fn anything_else_is_refused_with_what_was_expected_and_without_the_password() {
        let error = StoreLocation::parse("mysql://root:hunter2@db/x").unwrap_err();
        assert!(error.starts_with("store `mysql://root:***@db/x`: expected a PostgreSQL URL"), "{error}");
        let error = StoreLocation::parse("postgres://a:b@h/d x").unwrap_err();
        assert!(error.contains("a URL has no spaces") && !error.contains(":b@"), "{error}");
        assert!(StoreLocation::parse("just-a-word").is_err());
    }
}
