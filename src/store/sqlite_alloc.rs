//! SQLite's own memory: mimalloc instead of the C library's malloc, and no memory
//! statistics.
//!
//! Counted with `load-tests/profile.sh` (callgrind): the SQLite writer made ~400
//! allocations per accepted message, each through glibc malloc and, for SQLite's memory
//! statistics (`SQLITE_CONFIG_MEMSTATUS`, on by default), under a process-wide mutex — about
//! a tenth of all of weft's instructions. weft reads none of those statistics.
//!
//! SQLite accepts this configuration only before it initializes (the first connection
//! opens), and `sqlite3_config` must not race another thread using SQLite: so
//! [`configure`] runs first thing in `main`, before any thread touches a database.

#![allow(unsafe_code)] // FFI to SQLite and mimalloc; each block says why it is sound.

use rusqlite::ffi;
use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

/// What [`configure`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// SQLite allocates through mimalloc, without statistics.
    Configured,
    /// SQLite was already initialized in this process: it keeps its defaults (correct,
    /// only slower). Happens when a library user opened a database first.
    TooLate,
}

/// Points SQLite's allocator at mimalloc and turns its memory statistics off. Idempotent;
/// call it before any database is opened and while no other thread uses SQLite.
pub fn configure() -> Outcome {
    static DONE: OnceLock<Outcome> = OnceLock::new();
    *DONE.get_or_init(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: `sqlite3_config` is documented as not thread-safe; the caller runs this
        // before any other thread uses SQLite (see the module docs). SQLite copies
        // `methods` (it is only read during the call). After initialization both calls
        // return SQLITE_MISUSE and change nothing.
        let malloc = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_MALLOC,
                &methods as *const ffi::sqlite3_mem_methods,
            )
        };
        if malloc != ffi::SQLITE_OK {
            return Outcome::TooLate;
        }
        // SAFETY: as above; the argument is the `int` this option takes.
        let stats = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) };
        if stats == ffi::SQLITE_OK {
            Outcome::Configured
        } else {
            Outcome::TooLate
        }
    })
}

/// SQLite asks for sizes in `1..=i32::MAX` (it rejects others itself).
fn size(n: c_int) -> usize {
    usize::try_from(n).unwrap_or(0)
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    // SAFETY: plain allocation; mimalloc aligns to at least 8 bytes, as SQLite needs.
    unsafe { libmimalloc_sys::mi_malloc(size(n)) }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    // SAFETY: SQLite frees only what `x_malloc`/`x_realloc` returned (or null).
    unsafe { libmimalloc_sys::mi_free(p) }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: `p` came from `x_malloc`/`x_realloc`.
    unsafe { libmimalloc_sys::mi_realloc(p, size(n)) }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    // SAFETY: `p` came from `x_malloc`/`x_realloc`; its usable size is at least what was
    // asked for, which SQLite's own accounting expects.
    let n = unsafe { libmimalloc_sys::mi_usable_size(p) };
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // SAFETY: a pure function of its argument.
    let n = unsafe { libmimalloc_sys::mi_good_size(size(n)) };
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// nextest runs each test in its own process, so this one configures a fresh SQLite
    /// (under `cargo test` another test may have initialized it first: `TooLate`). Either
    /// way the database must work, with allocations, reallocations and frees of every size.
    #[test]
    fn sqlite_works_on_the_configured_allocator() {
        let outcome = configure();
        assert!(matches!(outcome, Outcome::Configured | Outcome::TooLate));
        assert_eq!(configure(), outcome, "idempotent");
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .expect("create");
        for i in 0..2_000_i64 {
            let body = "x".repeat(usize::try_from(i % 700).unwrap_or(0) * 13 + 1);
            conn.execute("INSERT INTO t (id, body) VALUES (?1, ?2)", (i, &body))
                .expect("insert");
        }
        let (n, len): (i64, i64) = conn
            .query_row("SELECT COUNT(*), SUM(length(body)) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("count");
        assert_eq!(n, 2_000);
        let expected: i64 = (0..2_000_i64).map(|i| (i % 700) * 13 + 1).sum();
        assert_eq!(len, expected);
        if outcome == Outcome::Configured {
            // Statistics are off: SQLite reports no memory in use.
            // SAFETY: reads a counter.
            let used = unsafe { ffi::sqlite3_memory_used() };
            assert_eq!(used, 0, "SQLITE_CONFIG_MEMSTATUS is off");
        }
    }
}
