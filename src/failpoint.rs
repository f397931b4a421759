//! Named places where a test build fails on purpose, to prove that a crash or a failed write in a narrow
//! window heals. Set through `CONVEYOR_FAILPOINTS` (`name=spec;name=spec`) or `set`; a spec is terms joined
//! by `->`, each `[N*]action` with action `off`, `panic`, `kill` (SIGKILL this process), `error`, or
//! `sleep(MS)`: `2*off->kill` kills at the third hit. Release builds compile every point to nothing.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The caller fails the operation as if the system had.
    Error,
}

#[cfg(debug_assertions)]
mod active {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Term {
        Off,
        Panic,
        Kill,
        Error,
        Sleep(u64),
    }

    type Points = HashMap<String, Vec<(Option<u32>, Term)>>;

    fn points() -> &'static Mutex<Points> {
        static POINTS: OnceLock<Mutex<Points>> = OnceLock::new();
        POINTS.get_or_init(|| {
            let mut points = HashMap::new();
            if let Ok(text) = std::env::var("CONVEYOR_FAILPOINTS") {
                for entry in text.split(';').filter(|entry| !entry.trim().is_empty()) {
                    match entry.split_once('=').map(|(name, spec)| (name.trim(), parse(spec))) {
                        Some((name, Some(terms))) => {
                            points.insert(name.to_string(), terms);
                        }
                        _ => eprintln!("CONVEYOR_FAILPOINTS: cannot read `{entry}`"),
                    }
                }
            }
            Mutex::new(points)
        })
    }

    fn parse(spec: &str) -> Option<Vec<(Option<u32>, Term)>> {
        spec.split("->")
            .map(|term| {
                let term = term.trim();
                let (count, action) = match term.split_once('*') {
                    Some((count, action)) => (Some(count.trim().parse().ok()?), action.trim()),
                    None => (None, term),
                };
                let action = match action {
                    "off" => Term::Off,
                    "panic" => Term::Panic,
                    "kill" => Term::Kill,
                    "error" => Term::Error,
                    sleep => Term::Sleep(sleep.strip_prefix("sleep(")?.strip_suffix(')')?.parse().ok()?),
                };
                Some((count, action))
            })
            .collect()
    }

    pub fn set(name: &str, spec: &str) {
        let terms = parse(spec).unwrap_or_else(|| panic!("fail point spec `{spec}`"));
        points().lock().expect("fail points").insert(name.to_string(), terms);
    }

    pub fn hit(name: &str) -> Option<super::Action> {
        let term = {
            let mut points = points().lock().expect("fail points");
            let terms = points.get_mut(name)?;
            let (count, term) = terms.first_mut()?;
            let term = *term;
            match count {
                Some(1) => {
                    terms.remove(0);
                }
                Some(left) => *left -= 1,
                None => {}
            }
            term
        };
        match term {
            Term::Off => None,
            Term::Panic => panic!("fail point {name}"),
            Term::Kill => {
                eprintln!("fail point {name}: SIGKILL");
                // SAFETY: sends a signal to this very process.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                std::thread::sleep(std::time::Duration::from_secs(60));
                None
            }
            Term::Error => Some(super::Action::Error),
            Term::Sleep(ms) => {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                None
            }
        }
    }
}

/// What the fail point `name` does now: kills, panics or sleeps itself; `Some(Error)` asks the caller to fail.
#[cfg(debug_assertions)]
pub fn hit(name: &str) -> Option<Action> {
    active::hit(name)
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) -> Option<Action> {
    None
}

/// Arms a fail point in this process (tests of the library).
#[cfg(debug_assertions)]
pub fn set(name: &str, spec: &str) {
    active::set(name, spec)
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;

    #[test]
    fn a_spec_counts_its_hits_and_then_goes_quiet() {
        set("test.counting", "2*off->1*error");
        assert_eq!(hit("test.counting"), None);
        assert_eq!(hit("test.counting"), None);
        assert_eq!(hit("test.counting"), Some(Action::Error));
        assert_eq!(hit("test.counting"), None, "every term used up");
        assert_eq!(hit("test.unarmed"), None);
    }
}
