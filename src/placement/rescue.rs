//! Taking over the tenants of a machine that died (`kill -9`, a lost volume): each is
//! restored from the bucket at its latest (so the last sync interval's writes may be lost),
//! its control rows read from the dead machine's own registry replica, and the directory
//! switched to the adopter. Invariant: a machine that still answers is never taken over, and
//! one that comes back finds its taken-over tenants listed as evicted and drops its copies
//! before it serves or resumes anything.

use super::{MachineId, MoveReport, Placement, PlacementError};
use crate::control::ControlDb;
use crate::control::passport::Passport;
use crate::replica::restore::FromBucket;
use crate::tenant::pool::blocking;
use crate::tenant::{Layout, StoreError, TenantId};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long a dead machine's restored registry is reused for the next tenant taken from it.
const REGISTRY_REUSE: Duration = Duration::from_secs(120);

impl Placement {
    /// Whether `machine` answers its health check within two seconds.
    pub async fn is_alive(&self, machine: &MachineId) -> Result<bool, PlacementError> {
        let m = self
            .directory
            .machine(machine)
            .await?
            .ok_or_else(|| PlacementError::UnknownMachine(machine.clone()))?;
        let answered = self
            .http
            .get(format!("{}/healthz", m.url))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        Ok(answered.is_ok_and(|r| r.status().is_success()))
    }

    /// Takes over `id` from the dead machine `from` (see the module).
    pub async fn adopt(
        self: &Arc<Self>,
        id: &TenantId,
        from: &MachineId,
    ) -> Result<MoveReport, PlacementError> {
        let me = self.config.me.clone();
        if *from == me {
            return Err(PlacementError::Refused(
                "a machine cannot take over its own tenants".into(),
            ));
        }
        let _busy = self.start_work(id)?;
        let entry = self.directory.entry(id).await?.ok_or_else(|| {
            PlacementError::Refused(format!("tenant {id} is not in the placement directory"))
        })?;
        if entry.owner.machine != *from {
            return Err(PlacementError::NotOwner {
                tenant: id.clone(),
                owner: entry.owner.machine,
            });
        }
        if self.is_alive(from).await? {
            return Err(PlacementError::Refused(format!(
                "machine {from} answers: move its tenants instead of taking them over"
            )));
        }
        let mut passport = self.dead_passport(from, id, entry.owner.epoch).await?;
        let staged = self.restore_staged(id, &passport).await?;
        passport.begin_lineage();
        // Before the switch: if the dead machine comes back, it lets go of its copy.
        self.directory.evict(from, id).await?;
        let now = match self.directory.switch(id, &entry, &me).await {
            Ok(now) => now,
            Err(super::DirectoryError::Changed(_)) => {
                return Err(PlacementError::Refused(format!(
                    "tenant {id}'s directory entry changed meanwhile; nothing was taken over"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        self.remember(id, Some(now.owner.clone()));
        self.spread_news(id, &[from]);
        let store = self.store.clone();
        let t = id.clone();
        blocking(move || store.take_in(&t, &staged, &passport)).await?;
        tracing::warn!(tenant = %id, from = %from, epoch = now.owner.epoch, "placement: tenant taken over from a dead machine");
        Ok(MoveReport {
            tenant: id.clone(),
            from: from.clone(),
            to: me,
            epoch: now.owner.epoch,
            fenced_ms: 0,
            promoted: true,
        })
    }

    /// The tenant's rows in the dead machine's registry as replicated last; or, when the
    /// registry was last shipped before the tenant arrived there (at `epoch`), the rows its
    /// move kept in the bucket.
    async fn dead_passport(
        &self,
        from: &MachineId,
        id: &TenantId,
        epoch: u64,
    ) -> Result<Passport, PlacementError> {
        let stashed = self
            .directory
            .stashed_passport(id)
            .await?
            .filter(|(e, _)| *e == epoch)
            .map(|(_, p)| p);
        let root = self
            .store
            .pool()
            .layout()
            .root()
            .join("_rescue")
            .join(from.as_str());
        let mut config = self.config.replica.clone();
        config.url = config.url.for_machine(from.as_str());
        let lock = self.rescue.clone();
        let (from, t) = (from.clone(), id.clone());
        blocking(move || {
            let _one = lock.lock().unwrap_or_else(|p| p.into_inner());
            let layout = Layout::new(&root);
            let fresh = std::fs::metadata(layout.control_db())
                .and_then(|m| m.modified())
                .is_ok_and(|t| {
                    SystemTime::now()
                        .duration_since(t)
                        .is_ok_and(|age| age < REGISTRY_REUSE)
                });
            if !fresh {
                let _ = std::fs::remove_dir_all(&root);
                let bucket = FromBucket::new(config)?;
                if bucket.registry(&layout.control_db(), None)?.is_none() {
                    return Err(PlacementError::Refused(format!(
                        "the bucket holds no registry of machine {from}"
                    )));
                }
            }
            let registry = ControlDb::open(&layout)?;
            let replicated = match registry.export_passport(&t) {
                Ok(p) => Some(p),
                Err(StoreError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            };
            // The registry's rows are newer, unless they are from before the move here.
            let current = replicated.as_ref().is_some_and(|p| {
                stashed
                    .as_ref()
                    .is_none_or(|s| p.lineages().last() == s.lineages().last())
            });
            match (replicated, stashed) {
                (Some(p), _) if current => Ok(p),
                (_, Some(s)) => Ok(s),
                _ => Err(PlacementError::Refused(format!(
                    "machine {from}'s replicated registry has no tenant {t} (created within its last sync?)"
                ))),
            }
        })
        .await
    }

    /// At start: lets go of this machine's copies of tenants taken over while it was down.
    pub(super) async fn drop_evicted(&self) -> Result<(), PlacementError> {
        let me = self.config.me.clone();
        for id in self.directory.evicted(&me).await? {
            let owner = self.directory.entry(&id).await?.map(|e| e.owner.machine);
            if owner.as_ref() != Some(&me) {
                tracing::warn!(tenant = %id, owner = ?owner.as_ref().map(MachineId::as_str), "placement: this machine's copy was taken over while it was down; dropping it");
                let store = self.store.clone();
                let t = id.clone();
                blocking(move || store.hand_off(&t)).await?;
            }
            self.directory.unevict(&me, &id).await?;
        }
        Ok(())
    }
}
