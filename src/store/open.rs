//! The one way in: every command, console and engine opens the store where the operator chose
//! (`StoreLocation`), so none of them can end up on the state folder's SQLite file by mistake.

use std::path::Path;

use super::{Result, Store, StoreLocation};

/// Opens (creating and migrating as needed) the store at `location`; `state_dir` keeps this host's logs
/// and work files whichever backend keeps the records.
pub fn open(state_dir: &Path, location: &StoreLocation) -> Result<Store> {
    match location {
        StoreLocation::StateFolder => Store::open(state_dir),
        StoreLocation::Postgres(url) => Store::connect(url.secret_text(), state_dir),
    }
}

/// Opens an existing store for reading: on SQLite nothing is created (`None` when there is no store yet);
/// a PostgreSQL database is there by definition, so it is connected to as `open` does.
pub fn peek(state_dir: &Path, location: &StoreLocation) -> Result<Option<Store>> {
    match location {
        StoreLocation::StateFolder => Store::peek(state_dir),
        StoreLocation::Postgres(_) => open(state_dir, location).map(Some),
    }
}
