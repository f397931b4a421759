//! The floor for a chain of processes: `spawn_loop N PROGRAM [ARGS...]` starts PROGRAM N times, one after
//! another, each waited for, with the standard streams inherited — what any engine must at least pay.
//! `benches/chain.sh` divides a `conveyor run` of the same chain by this.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(count), Some(program)) = (args.next().and_then(|count| count.parse::<u32>().ok()), args.next()) else {
        eprintln!("usage: spawn_loop N PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.collect();
    for _ in 0..count {
        match Command::new(&program).args(&rest).status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("{program}: {status}");
                return ExitCode::FAILURE;
            }
            Err(error) => {
                eprintln!("{program}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
