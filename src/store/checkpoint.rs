//! SQLite's write-ahead log, kept short: a thread of its own checkpoints it while the
//! writer works, and restarts it between two of the writer's batches.

use tokio::sync::Mutex;

/// Checkpoints the WAL every 250 ms (without blocking the writer or readers) until the
/// writer thread ends; then once more, completely.
///
/// When the `-wal` file has outgrown [`WAL_LIMIT_BYTES`], passive rounds [`catch_up`] with
/// the writer, then a restart under the write gate (between two of the writer's batches)
/// copies what was committed during the last round: the writer pauses 1–7 ms, about every
/// 0.6 s at full speed (8–21 ms after a single round; accept p99 ~33 → ~25 ms, see
/// `load-tests/RESULTS.md`).
pub(super) fn checkpoints(
    conn: &rusqlite::Connection,
    wal: &std::path::Path,
    gate: &Mutex<()>,
    writer_gone: &std::sync::mpsc::Receiver<()>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    while let Err(RecvTimeoutError::Timeout) =
        writer_gone.recv_timeout(std::time::Duration::from_millis(250))
    {
        if let Err(e) = checkpoint(conn, false) {
            tracing::warn!(error = %e, "SQLite checkpoint failed; will try again.");
            continue;
        }
        let size = std::fs::metadata(wal).map_or(0, |m| m.len());
        if size > WAL_LIMIT_BYTES {
            let rounds = catch_up(conn);
            let waited = std::time::Instant::now();
            let _gate = gate.blocking_lock();
            let gated = std::time::Instant::now();
            match checkpoint(conn, true) {
                Ok(frames) => tracing::debug!(
                    size,
                    frames = frames.log,
                    rounds,
                    gate_ms = (gated - waited).as_millis() as u64,
                    paused_ms = gated.elapsed().as_millis() as u64,
                    "SQLite WAL restarted."
                ),
                Err(e) => tracing::warn!(error = %e, "SQLite WAL restart failed; will try again."),
            }
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// Passive checkpoints, one after another, until one is quick: the restart then copies (and
/// syncs) only what the writer committed during that last one, while the writer waits.
/// A round that a reader kept from copying everything is followed by a short sleep and
/// another. Returns the rounds run.
fn catch_up(conn: &rusqlite::Connection) -> u32 {
    for round in 1..=CATCH_UP_ROUNDS {
        let started = std::time::Instant::now();
        let Ok(frames) = checkpoint(conn, false) else {
            return round;
        };
        if frames.copied < frames.log {
            // A reader still needs frames this round could not copy: it will be done soon.
            std::thread::sleep(CATCH_UP_QUICK);
        } else if started.elapsed() < CATCH_UP_QUICK {
            return round;
        }
    }
    CATCH_UP_ROUNDS
}

/// At most this many catch-up rounds before a restart…
const CATCH_UP_ROUNDS: u32 = 8;
/// …ending at the first that took less than this.
const CATCH_UP_QUICK: std::time::Duration = std::time::Duration::from_millis(2);

/// The WAL file size above which the log is restarted (and what `journal_size_limit`
/// leaves on disk).
pub(super) const WAL_LIMIT_BYTES: u64 = 64 << 20;

/// What a checkpoint reports: the frames in the log, and how many of them are now copied
/// into the database.
#[derive(Debug, Clone, Copy)]
struct Frames {
    log: i64,
    copied: i64,
}

/// One checkpoint. `PASSIVE` copies what no reader still
/// needs without blocking anyone. But under steady load the writer always has a commit the
/// checkpoint has not copied yet, and the log only starts over when a write transaction
/// begins with everything copied: it never does, and the file grows without bound
/// (measured: 800 MB after 30,000 messages). `RESTART` waits until no one writes and no
/// reader needs the old frames, copies the rest, and makes the next commit write from the
/// start of the file again.
fn checkpoint(conn: &rusqlite::Connection, restart: bool) -> Result<Frames, rusqlite::Error> {
    let sql = if restart {
        "PRAGMA wal_checkpoint(RESTART)"
    } else {
        "PRAGMA wal_checkpoint(PASSIVE)"
    };
    conn.query_row(sql, [], |r| {
        Ok(Frames {
            log: r.get(1)?,
            copied: r.get(2)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::writer::open_lite;
    use super::*;

    /// A WAL database with a table `t` in a temp dir (kept while the first value lives),
    /// its path, and the writer's connection.
    fn wal_db() -> (tempfile::TempDir, String, rusqlite::Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.db").to_string_lossy().into_owned();
        let w = open_lite(&path).expect("writer");
        w.execute_batch("PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (x TEXT)")
            .expect("schema");
        (dir, path, w)
    }

    /// Commits `n` rows of about a page each.
    fn fill(w: &rusqlite::Connection, n: usize) {
        for _ in 0..n {
            w.execute("INSERT INTO t (x) VALUES (?1)", ["x".repeat(3000)])
                .expect("insert");
        }
    }

    /// Opens a read transaction on `r` (its snapshot holds the log's frames from now on).
    fn hold_snapshot(r: &rusqlite::Connection) {
        r.execute_batch("BEGIN").expect("begin read");
        let _: i64 = r
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .expect("read");
    }

    /// Catching up copies everything a reader does not hold; a reader that holds frames
    /// does not keep it going for ever.
    #[test]
    fn catching_up_copies_the_log_and_gives_up_on_a_reader() {
        let (_dir, path, w) = wal_db();
        let c = open_lite(&path).expect("checkpointer");
        let left = |conn: &rusqlite::Connection| {
            let f = checkpoint(conn, false).expect("checkpoint");
            f.log - f.copied
        };
        fill(&w, 20);
        let rounds = catch_up(&c);
        assert!((1..=CATCH_UP_ROUNDS).contains(&rounds), "{rounds} rounds");
        assert_eq!(left(&c), 0, "everything copied");
        let r = open_lite(&path).expect("reader");
        hold_snapshot(&r);
        fill(&w, 20);
        assert_eq!(catch_up(&c), CATCH_UP_ROUNDS, "gave up after its rounds");
        assert!(left(&c) > 0, "the reader's frames are still in the log");
        r.execute_batch("COMMIT").expect("end read");
    }

    /// While a reader holds an old snapshot a passive checkpoint cannot catch up, and the
    /// next commit appends to the log; after a restart checkpoint the next commit writes
    /// from the start of the log again.
    #[test]
    fn a_restart_checkpoint_lets_the_wal_start_over() {
        let (_dir, path, w) = wal_db();
        let c = open_lite(&path).expect("checkpointer");
        let r = open_lite(&path).expect("reader");
        fill(&w, 20);
        hold_snapshot(&r);
        fill(&w, 20);
        let held = checkpoint(&c, false).expect("passive").log;
        fill(&w, 5);
        let grown = checkpoint(&c, false).expect("passive").log;
        assert!(grown > held, "the log kept growing: {held} -> {grown}");
        r.execute_batch("COMMIT").expect("end read");
        assert_eq!(checkpoint(&w, true).expect("restart").log, grown);
        fill(&w, 1);
        let after = checkpoint(&c, false).expect("passive").log;
        assert!(
            after < 5,
            "the log started over: {after} frames, was {grown}"
        );
    }
}
