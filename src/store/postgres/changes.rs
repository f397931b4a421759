//! What changed since a stamp: the rows of runs, tasks and attempts the database stamped (migration 3's
//! trigger, from the `changes` sequence) after the reader's last one, so a console keeps up with a busy store
//! by reading only those.

use tokio_postgres::Row;

use super::connection::Conn;
use super::rows::{self, get};
use crate::store::{Changes, Result};

/// Rows stamped after `after`, at most `limit` of each kind. Where a kind fills its limit, `through` stops at
/// its last stamp and rows of the other kinds beyond it are left for the next read, so no stamp is skipped.
pub(super) fn since(conn: &mut Conn, after: i64, limit: usize) -> Result<Changes> {
    let count = limit as i64;
    let runs = conn.query("SELECT * FROM runs WHERE changed > $1 ORDER BY changed LIMIT $2", &[&after, &count])?;
    let tasks = conn.query("SELECT * FROM tasks WHERE changed > $1 ORDER BY changed LIMIT $2", &[&after, &count])?;
    let attempts =
        conn.query("SELECT * FROM attempts WHERE changed > $1 ORDER BY changed LIMIT $2", &[&after, &count])?;
    let (runs, tasks, attempts) = (stamped(runs)?, stamped(tasks)?, stamped(attempts)?);
    let through = covered(after, limit, [&runs, &tasks, &attempts].map(|kind| kind.iter().map(|(stamp, _)| *stamp)));
    let upto = |kind: Vec<(i64, Row)>| kind.into_iter().take_while(move |(stamp, _)| *stamp <= through);
    Ok(Changes {
        runs: upto(runs).map(|(_, row)| rows::run(&row)).collect::<Result<_>>()?,
        tasks: upto(tasks).map(|(_, row)| rows::task(&row)).collect::<Result<_>>()?,
        attempts: upto(attempts).map(|(_, row)| rows::attempt(&row)).collect::<Result<_>>()?,
        through,
    })
}

/// The highest stamp of any committed run, task or attempt (0 for none); each `max` is one index look-up.
pub(super) fn mark(conn: &mut Conn) -> Result<i64> {
    let row = conn.query_one(
        "SELECT COALESCE(GREATEST((SELECT max(changed) FROM runs), (SELECT max(changed) FROM tasks),
            (SELECT max(changed) FROM attempts)), 0) AS mark",
        &[],
    )?;
    get(&row, "mark")
}

fn stamped(found: Vec<Row>) -> Result<Vec<(i64, Row)>> {
    found.into_iter().map(|row| Ok((get(&row, "changed")?, row))).collect()
}

/// How far a read of three kinds, each in stamp order, covers every stamp: up to the highest it saw, unless a
/// kind stopped at `limit`, whose rows beyond its last were not read (then up to the lowest such last).
fn covered(after: i64, limit: usize, kinds: [impl Iterator<Item = i64>; 3]) -> i64 {
    let mut highest = after;
    let mut cut: Option<i64> = None;
    for kind in kinds {
        let stamps: Vec<i64> = kind.collect();
        let Some(&last) = stamps.last() else { continue };
        highest = highest.max(last);
        if stamps.len() >= limit {
            cut = Some(cut.map_or(last, |cut| cut.min(last)));
        }
    }
    cut.unwrap_or(highest)
}

#[cfg(test)]
mod tests {
    use super::covered;

    #[test]
    fn a_read_covers_the_highest_stamp_it_saw_or_the_last_of_a_kind_cut_at_the_limit() {
        let none: [std::vec::IntoIter<i64>; 3] = [vec![], vec![], vec![]].map(Vec::into_iter);
        assert_eq!(covered(7, 10, none), 7);
        assert_eq!(covered(0, 10, [vec![1, 5], vec![2], vec![9]].map(Vec::into_iter)), 9);
        // Tasks filled the limit at 4: attempts at 6 and runs at 5 are read again next time.
        assert_eq!(covered(0, 2, [vec![5], vec![3, 4], vec![6]].map(Vec::into_iter)), 4);
        assert_eq!(covered(0, 2, [vec![1, 8], vec![3, 4], vec![6]].map(Vec::into_iter)), 4);
    }
}
