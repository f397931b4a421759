//! Which store a command uses: `--store` (or `CONVEYOR_STORE`) wins over `store = "…"` in the registry;
//! neither is the state folder's SQLite file. A value is only ever shown redacted.

use std::path::Path;

use crate::definition::{REGISTRY_FILE, Reference, load_file, parse_reference};
use crate::store::StoreLocation;

/// The location for a command that reads or writes the store.
pub fn chosen(flag: Option<&str>, workflows: &Path) -> Result<StoreLocation, String> {
    if let Some(flag) = flag {
        return StoreLocation::parse(flag).map_err(|error| format!("--store (or CONVEYOR_STORE): {error}"));
    }
    let file = workflows.join(REGISTRY_FILE);
    if !file.exists() {
        return Ok(StoreLocation::StateFolder);
    }
    let catalog = load_file(&file);
    // Only a bad `store` stops the command here; the registry's other problems are reported where they
    // always were, and an engine still starts with them.
    if let Some(problem) = catalog.problems().find(|problem| problem.message.starts_with("bad `store`")) {
        return Err(problem.to_string());
    }
    let Some(written) = catalog.registry.store.as_deref() else { return Ok(StoreLocation::StateFolder) };
    let text = resolve(written, workflows).map_err(|error| format!("{}: store: {error}", file.display()))?;
    StoreLocation::parse(&text).map_err(|error| format!("{}: {error} (from `{written}`)", file.display()))
}

/// The text a secret reference stands for, read now so the password need not sit in the file.
fn resolve(written: &str, workflows: &Path) -> Result<String, String> {
    match parse_reference(written)? {
        None => Ok(written.to_string()),
        Some(Reference::Env(name)) => std::env::var(name)
            .map_err(|_| format!("`{written}`: the environment variable {name} is not set (or not UTF-8)")),
        Some(Reference::File(path)) => std::fs::read_to_string(workflows.join(path))
            .map(|text| text.trim().to_string())
            .map_err(|error| format!("`{written}`: cannot read {path}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(registry: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(REGISTRY_FILE), registry).unwrap();
        dir
    }

    #[test]
    fn a_file_reference_is_read_beside_the_registry_and_the_flag_still_wins() {
        let dir = folder("store = \"${file:secrets/db}\"\n");
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        std::fs::write(dir.path().join("secrets/db"), "postgres://app:pw@db/conveyor\n").unwrap();
        let chosen = chosen(None, dir.path()).unwrap();
        assert_eq!(chosen, StoreLocation::parse("postgres://app:pw@db/conveyor").unwrap());
        assert_eq!(super::chosen(Some(""), dir.path()).unwrap(), StoreLocation::StateFolder);
    }

    #[test]
    fn a_malformed_reference_is_reported_at_its_line_and_column() {
        let dir = folder("# where the records live\nstore = \"${vault:db}\"\n");
        let error = chosen(None, dir.path()).unwrap_err();
        assert!(error.ends_with("conveyor.toml:2:9: bad `store`: bad secret reference `${vault:db}`: expected `${env:NAME}` or `${file:PATH}` as the whole value"), "{error}");
    }

    #[test]
    fn a_file_that_does_not_hold_an_address_says_so_without_the_password() {
        let dir = folder("store = \"${file:db}\"\n");
        std::fs::write(dir.path().join("db"), "mysql://app:pw-in-file@db/c").unwrap();
        let error = chosen(None, dir.path()).unwrap_err();
        assert!(error.contains("expected a PostgreSQL URL") && error.contains("(from `${file:db}`)"), "{error}");
        assert!(!error.contains("pw-in-file"), "{error}");
    }
}
