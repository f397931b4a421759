//! `conveyor engines`: the engines sharing the store, as the database knows them (no engine needed).

use std::path::Path;
use std::process::ExitCode;

use super::fail;
use super::follow::seconds;
use super::history::print_table;
use crate::console::ONE_ENGINE;
use crate::store::StoreLocation;
use crate::text::visible;

pub fn run(state: &Path, location: &StoreLocation) -> ExitCode {
    if *location == StoreLocation::StateFolder {
        println!("{ONE_ENGINE} ({})", state.display());
        return ExitCode::SUCCESS;
    }
    let store = match crate::store::open(state, location) {
        Ok(store) => store,
        Err(error) => return fail(error),
    };
    let engines = match store.engines() {
        Ok(engines) => engines,
        Err(error) => return fail(error),
    };
    let header = ["ENGINE", "HOST", "PID", "ROUTES", "HEARTBEAT", "LEADER"].map(String::from);
    let rows: Vec<[String; 6]> = engines
        .iter()
        .map(|engine| {
            // Hosts and routes are what each engine said of itself: shown, never obeyed.
            [
                format!("#{}", engine.id.0),
                visible(&engine.host).into_owned(),
                engine.pid.to_string(),
                visible(&engine.routes.join(", ")).into_owned(),
                format!("{} ago", seconds(engine.silent_for)),
                if engine.leads { "leader".into() } else { String::new() },
            ]
        })
        .collect();
    print_table(&header, &rows);
    if rows.is_empty() {
        println!("(no engine has joined this store)");
    }
    ExitCode::SUCCESS
}
