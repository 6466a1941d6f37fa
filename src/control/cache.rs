//! `Fenced`: a cache of control-db reads that every write through the handle empties.
//! Invariant: no value read before a write is cached after it — a read holds the fence
//! shared around its query and its insert, a write holds it exclusively around its change
//! and the emptying; both take their connection before the fence, so no one waits for a
//! connection while holding it.

use crate::tenant::StoreError;
use dashmap::DashMap;
use std::hash::Hash;
use std::sync::{RwLock, RwLockWriteGuard};

/// Held while a write's change and its cache's emptying go together.
pub type Writing<'a> = RwLockWriteGuard<'a, ()>;

/// Values found in the control db, by key; absent values are not kept.
pub struct Fenced<K: Eq + Hash, V> {
    map: DashMap<K, V>,
    fence: RwLock<()>,
}

impl<K: Eq + Hash, V> Default for Fenced<K, V> {
    fn default() -> Self {
        Fenced {
            map: DashMap::new(),
            fence: RwLock::new(()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> Fenced<K, V> {
    /// The cached value (no IO); `None` says nothing about the database.
    pub fn get(&self, key: &K) -> Option<V> {
        self.map.get(key).map(|v| v.clone())
    }

    /// The cached value, else `read` (on a connection the caller took first) under the
    /// fence, keeping what it finds.
    pub fn read_through(
        &self,
        key: K,
        read: impl FnOnce() -> Result<Option<V>, StoreError>,
    ) -> Result<Option<V>, StoreError> {
        if let Some(v) = self.get(&key) {
            return Ok(Some(v));
        }
        let _reading = self.fence.read().unwrap_or_else(|p| p.into_inner());
        let found = read()?;
        if let Some(v) = &found {
            self.map.insert(key, v.clone());
        }
        Ok(found)
    }

    /// Empties the cache for a write, holding it empty until the guard drops.
    pub fn forget(&self) -> Writing<'_> {
        let writing = self.fence.write().unwrap_or_else(|p| p.into_inner());
        self.map.clear();
        writing
    }
}
