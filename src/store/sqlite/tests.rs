//! What only SQLite does: the file, its pragmas and permissions; and the store contract run against it.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::store::Store;

crate::store::contract::store_contract!({
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
});

#[test]
fn a_new_store_is_private_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    drop(SqliteStore::open(&state).unwrap());
    let store = SqliteStore::open(&state).unwrap();
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(state.join(DATABASE_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
    let mode: String = store.connection.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_state_folder_open_to_others_is_made_private_or_refused_when_it_is_shared() {
    let dir = tempfile::tempdir().unwrap();
    let loose = dir.path().join("loose");
    std::fs::create_dir(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
    drop(SqliteStore::open(&loose).unwrap());
    assert_eq!(std::fs::metadata(&loose).unwrap().permissions().mode() & 0o7777, 0o700);

    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let refused = SqliteStore::open(&shared).err().expect("a shared folder is refused");
    assert_eq!(
        refused.to_string(),
        format!(
            "the state folder {} is open to other users (mode 1777) and cannot be made private: use a folder of your own (--state)",
            shared.display()
        )
    );
}

#[test]
fn a_database_failure_is_told_in_the_databases_words_without_its_type() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DATABASE_FILE), "this is not a database file, but long enough to look like one")
        .unwrap();
    let error =
        SqliteStore::open(dir.path()).err().expect("a file that is not a database cannot be opened as the store");
    let StoreError::Database(words) = &error else { panic!("expected a database error, got {error:?}") };
    assert!(words.contains("not a database"), "{words}");
    assert_eq!(error.to_string(), format!("store: {words}"));
}

#[test]
fn a_peek_creates_nothing_and_reads_what_an_open_store_wrote() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Store::peek(dir.path()).unwrap().is_none());
    assert!(!dir.path().join(DATABASE_FILE).exists(), "a peek makes no database");
    let store = Store::open(dir.path()).unwrap();
    store.set_paused("W", true, chrono::Utc::now()).unwrap();
    let peek = Store::peek(dir.path()).unwrap().expect("a store with tables");
    assert_eq!(peek.paused_workflows().unwrap().into_iter().collect::<Vec<_>>(), ["W"]);
    assert_eq!(peek.state_dir(), dir.path());
    let refused = peek.set_paused("X", true, chrono::Utc::now()).unwrap_err();
    assert!(refused.to_string().contains("readonly"), "{refused}");
}

#[test]
fn a_database_file_replaced_under_the_store_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let path = dir.path().join(DATABASE_FILE);
    drop(SqliteStore::open(&dir.path().join("other")).unwrap());
    std::fs::rename(dir.path().join("other").join(DATABASE_FILE), &path).unwrap();
    store.begin_batch().unwrap();
    store.set_paused("W", true, chrono::Utc::now()).unwrap();
    let error = store.commit_batch().unwrap_err();
    assert!(matches!(&error, StoreError::Replaced(replaced) if *replaced == path), "{error:?}");
    assert!(store.has_pending(), "the batch's writes are held, not dropped");
}

#[test]
fn sqlite_stamps_no_changes_so_its_console_reads_snapshots_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.changes_since(0, 100).unwrap(), None);
    assert_eq!(store.change_mark().unwrap(), None);
}
