//! Which tenants have live endpoints, so [`super::enqueue`] costs nothing for the others.
//!
//! Process-wide, because `enqueue` runs inside store transactions that know no app state.
//! Each running worker owns one source set, replaced by each refresh from its database
//! (every ~2 s); the live set is the union of all sources plus tenants "pinned" by an
//! endpoint created in this process (pinned *before* the insert and kept for a while, so a
//! refresh racing the insert cannot hide a new endpoint). Several apps in one process
//! (tests) each add their own source; tenant ids are ULIDs, so sets never collide.
//!
//! While any worker has not yet finished its first refresh — or when no worker runs at all
//! (a store used without a server) — the cache cannot answer and `enqueue` asks the database.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// How long a tenant pinned by a local create stays live without a refresh confirming it.
const PIN_FOR: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Cache {
    sources: Mutex<State>,
    live: RwLock<HashSet<String>>,
    /// Some worker runs and every running worker has loaded its set.
    ready: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Worker id → its tenants; `None` until the worker's first refresh.
    sources: HashMap<u64, Option<HashSet<String>>>,
    pinned: HashMap<String, Instant>,
}

fn cache() -> &'static Cache {
    static C: OnceLock<Cache> = OnceLock::new();
    C.get_or_init(Cache::default)
}

static NEXT_SOURCE: AtomicU64 = AtomicU64::new(1);

/// What the cache knows about a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The tenant may have endpoints: ask the database.
    Maybe,
    /// The tenant has no live endpoint.
    No,
}

pub fn lookup(tenant_id: &str) -> Answer {
    let c = cache();
    if let Ok(live) = c.live.read() {
        if live.contains(tenant_id) {
            return Answer::Maybe;
        }
    }
    if c.ready.load(Ordering::Acquire) {
        Answer::No
    } else {
        Answer::Maybe
    }
}

/// Registers a worker; its source counts as "not loaded" until [`SourceGuard::replace`].
pub fn register() -> SourceGuard {
    let id = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed);
    let c = cache();
    if let Ok(mut s) = c.sources.lock() {
        s.sources.insert(id, None);
        rebuild(c, &mut s);
    }
    SourceGuard { id }
}

/// A worker's source set; dropped with the worker (also when its runtime goes away).
pub struct SourceGuard {
    id: u64,
}

impl SourceGuard {
    /// Replaces this worker's set with what its database says now.
    pub fn replace(&self, tenants: HashSet<String>) {
        let c = cache();
        let Ok(mut s) = c.sources.lock() else { return };
        s.sources.insert(self.id, Some(tenants));
        rebuild(c, &mut s);
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let c = cache();
        let Ok(mut s) = c.sources.lock() else { return };
        s.sources.remove(&self.id);
        rebuild(c, &mut s);
    }
}

/// An endpoint is about to be created for `tenant_id` in this process.
pub fn pin(tenant_id: &str) {
    let c = cache();
    if let Ok(mut s) = c.sources.lock() {
        s.pinned
            .insert(tenant_id.to_string(), Instant::now() + PIN_FOR);
    }
    if let Ok(mut live) = c.live.write() {
        live.insert(tenant_id.to_string());
    }
}

/// The tenant's last live endpoint was deleted in this process.
pub fn forget(tenant_id: &str) {
    let c = cache();
    let Ok(mut s) = c.sources.lock() else { return };
    s.pinned.remove(tenant_id);
    for set in s.sources.values_mut().flatten() {
        set.remove(tenant_id);
    }
    rebuild(c, &mut s);
}

fn rebuild(c: &Cache, s: &mut State) {
    let now = Instant::now();
    s.pinned.retain(|_, until| *until > now);
    let mut all: HashSet<String> = s.pinned.keys().cloned().collect();
    for set in s.sources.values().flatten() {
        all.extend(set.iter().cloned());
    }
    if let Ok(mut l) = c.live.write() {
        *l = all;
    }
    let ready = !s.sources.is_empty() && s.sources.values().all(Option::is_some);
    c.ready.store(ready, Ordering::Release);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // One test: the cache is process-wide, so its steps must not interleave with another.
    #[test]
    fn sources_pins_and_forgets() {
        let a = crate::domain::ids::new_id(crate::domain::ids::IdKind::Tenant);
        let b = crate::domain::ids::new_id(crate::domain::ids::IdKind::Tenant);
        let w = register();
        assert_eq!(lookup(&a), Answer::Maybe, "not loaded yet");
        w.replace(HashSet::from([a.clone()]));
        assert_eq!(lookup(&a), Answer::Maybe);
        // Other workers of other tests may still be loading; only "a" is certain.
        pin(&b);
        w.replace(HashSet::from([a.clone()]));
        assert_eq!(lookup(&b), Answer::Maybe, "a pin survives a refresh");
        forget(&a);
        forget(&b);
        let w2 = register();
        w2.replace(HashSet::new());
        drop(w);
        if lookup("tn_none") == Answer::No {
            assert_eq!(lookup(&a), Answer::No);
            assert_eq!(lookup(&b), Answer::No);
        }
    }
}
