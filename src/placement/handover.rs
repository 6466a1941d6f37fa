//! Moving a tenant between machines. The source fences the tenant, closes it (Litestream's
//! final sync), notes the move, and hands the target its control rows; the target restores
//! the file from the bucket into a staging path; the source switches the directory (the
//! commit point) and lets go of its copy. Invariant: before the switch only the source may
//! serve the tenant, after it only the target; a crash at any step is resolved from the
//! directory at the next start, and the restored file replicates under a new lineage, so
//! the two machines never write one replica path.

use super::{Entry, MachineId, Placement, PlacementError};
use crate::control::passport::{Arrival, MoveOut, Passport};
use crate::replica::restore::FromBucket;
use crate::tenant::pool::blocking;
use crate::tenant::{StoreError, TenantId};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What the source sends the target.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArrivalIn {
    /// The machine the tenant leaves.
    pub from: MachineId,
    /// The directory epoch that will make it the target's.
    pub epoch: u64,
    /// The tenant's control rows.
    #[schemars(with = "serde_json::Value")]
    pub passport: Passport,
}

/// What a move did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MoveReport {
    pub tenant: TenantId,
    pub from: MachineId,
    pub to: MachineId,
    /// The directory epoch now.
    pub epoch: u64,
    /// Milliseconds the tenant was fenced (requests for it answered 503, retry).
    pub fenced_ms: u64,
    /// Whether the target took the tenant in at once (else at its first request).
    pub promoted: bool,
}

impl Placement {
    /// Moves `id`, owned here, to machine `to` (see the module's steps).
    pub async fn move_out(
        self: &Arc<Self>,
        id: &TenantId,
        to: &MachineId,
    ) -> Result<MoveReport, PlacementError> {
        if *to == self.config.me {
            return Err(PlacementError::Refused(format!(
                "tenant {id} is on machine {to} already"
            )));
        }
        let target = self
            .directory
            .machine(to)
            .await?
            .ok_or_else(|| PlacementError::UnknownMachine(to.clone()))?;
        let _busy = self.start_work(id)?;
        let entry = self.own_entry(id).await?;
        // Open it once so Litestream holds it: the close below is then its final sync.
        let store = self.store.clone();
        let t = id.clone();
        blocking(move || store.pool().acquire(&t).map(drop)).await?;
        let pool = self.store.pool().clone();
        pool.fence(id);
        let fenced = Instant::now();
        let outcome = self.hand_over(id, &entry, &target.url, to).await;
        match &outcome {
            Err(PlacementError::InDoubt(_)) => {} // stays fenced until resolved
            Err(_) => pool.unfence(id),
            Ok(_) => {}
        }
        let (epoch, promoted) = outcome?;
        self.spread_news(id, &[to]);
        Ok(MoveReport {
            tenant: id.clone(),
            from: self.config.me.clone(),
            to: to.clone(),
            epoch,
            fenced_ms: fenced.elapsed().as_millis() as u64,
            promoted,
        })
    }

    /// The directory entry of a tenant registered here, placing it first if it never was.
    async fn own_entry(&self, id: &TenantId) -> Result<Entry, PlacementError> {
        let store = self.store.clone();
        let t = id.clone();
        blocking(move || store.control().get_active(&t)).await?;
        let entry = match self.directory.entry(id).await? {
            Some(e) => e,
            None => self.directory.place(id, &self.config.me).await?,
        };
        if entry.owner.machine != self.config.me {
            return Err(PlacementError::NotOwner {
                tenant: id.clone(),
                owner: entry.owner.machine,
            });
        }
        Ok(entry)
    }

    /// The fenced part of a move: the new epoch and whether the target took it in at once.
    async fn hand_over(
        &self,
        id: &TenantId,
        entry: &Entry,
        url: &str,
        to: &MachineId,
    ) -> Result<(u64, bool), PlacementError> {
        let store = self.store.clone();
        let replicator = self.replicator.clone();
        let t = id.clone();
        let passport = blocking(move || {
            let path = store.pool().layout().tenant_db(&t);
            replicator.await_final(&path);
            store.pool().close_and(&t, || Ok(()))?;
            if !replicator.handed_over(&path) {
                return Err(StoreError::Conflict(format!(
                    "tenant {t}'s final sync to the bucket failed"
                )));
            }
            store.control().export_passport(&t)
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => PlacementError::FinalSync(id.clone()),
            e => e.into(),
        })?;
        let epoch = entry.owner.epoch + 1;
        let note = MoveOut {
            tenant: id.clone(),
            to: to.to_string(),
            epoch,
        };
        let store = self.store.clone();
        blocking(move || store.control().begin_move_out(&note)).await?;
        let arrival = ArrivalIn {
            from: self.config.me.clone(),
            epoch,
            passport,
        };
        let sent = self
            .call(
                to,
                url,
                reqwest::Method::POST,
                &format!("arrivals/{id}"),
                Some(&arrival),
            )
            .await;
        if let Err(e) = sent {
            self.abandon(id).await;
            return Err(e);
        }
        match self.directory.switch(id, entry, to).await {
            Ok(now) => self.remember(id, Some(now.owner)),
            Err(super::DirectoryError::Changed(_)) => {
                self.abandon(id).await;
                let _ = self
                    .call(
                        to,
                        url,
                        reqwest::Method::DELETE,
                        &format!("arrivals/{id}"),
                        None::<&()>,
                    )
                    .await;
                return Err(PlacementError::Refused(format!(
                    "tenant {id}'s directory entry changed during the move; it stays here"
                )));
            }
            Err(e) => {
                tracing::error!(tenant = %id, error = %e, "placement: the directory switch's outcome is unknown");
                return Err(PlacementError::InDoubt(id.clone()));
            }
        }
        let promoted = self
            .call(
                to,
                url,
                reqwest::Method::POST,
                &format!("arrivals/{id}/promote"),
                None::<&()>,
            )
            .await
            .is_ok();
        self.let_go(id).await?;
        tracing::info!(tenant = %id, to = %to, epoch, promoted, "placement: tenant moved");
        Ok((epoch, promoted))
    }

    /// Forgets a move that will not happen (the tenant stays here).
    async fn abandon(&self, id: &TenantId) {
        let store = self.store.clone();
        let t = id.clone();
        if let Err(e) = blocking(move || store.control().abandon_move_out(&t)).await {
            tracing::warn!(tenant = %id, error = %e, "placement: cannot forget an abandoned move");
        }
    }

    /// After the switch: this machine's copy and rows go, and the fence comes down (a
    /// request that finds no file here is replayed to the owner).
    async fn let_go(&self, id: &TenantId) -> Result<(), PlacementError> {
        let store = self.store.clone();
        let t = id.clone();
        blocking(move || store.hand_off(&t)).await?;
        self.store.pool().unfence(id);
        Ok(())
    }

    /// One call to another machine's placement API.
    pub(super) async fn call<B: Serialize>(
        &self,
        machine: &MachineId,
        url: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), PlacementError> {
        let mut req = self
            .http
            .request(method, format!("{url}/v1/placement/{path}"))
            .bearer_auth(self.config.token.expose());
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| PlacementError::Unreachable {
            machine: machine.clone(),
            error: e.to_string(),
        })?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let said = res.text().await.unwrap_or_default();
        Err(PlacementError::Peer {
            machine: machine.clone(),
            status: status.as_u16(),
            said: said.chars().take(500).collect(),
        })
    }

    /// The target's half: restores the tenant's current lineage from the bucket into a
    /// staging path and keeps it, unserved, until the directory names this machine.
    pub async fn arrive(&self, id: &TenantId, a: ArrivalIn) -> Result<(), PlacementError> {
        let _busy = self.start_work(id)?;
        let store = self.store.clone();
        let t = id.clone();
        let here =
            blocking(move || Ok::<_, StoreError>(store.control().get_active(&t).is_ok())).await?;
        if here || self.store.pool().layout().tenant_db(id).exists() {
            return Err(PlacementError::Refused(format!(
                "tenant {id} is already registered on machine {}",
                self.config.me
            )));
        }
        let mut a = a;
        let staged = self.restore_staged(id, &a.passport).await?;
        // The file's next history here; the rows kept in the bucket for a takeover.
        a.passport.begin_lineage();
        self.directory
            .stash_passport(id, a.epoch, &a.passport)
            .await?;
        let arrival = Arrival {
            tenant: id.clone(),
            from: a.from.to_string(),
            epoch: a.epoch,
            staged_path: staged,
            passport: a.passport,
        };
        let store = self.store.clone();
        blocking(move || store.control().put_arrival(&arrival)).await?;
        tracing::info!(tenant = %id, from = %a.from, epoch = a.epoch, "placement: tenant restored, waiting for the directory");
        Ok(())
    }

    /// Restores the tenant's current lineage (the passport's last that holds anything) at
    /// its latest into the staging path, and checks it.
    pub(super) async fn restore_staged(
        &self,
        id: &TenantId,
        passport: &Passport,
    ) -> Result<PathBuf, PlacementError> {
        let lineages = passport.lineages();
        if lineages.is_empty() {
            return Err(PlacementError::Refused(format!(
                "tenant {id} has never been replicated; nothing to restore"
            )));
        }
        let staged = self.staging_path(id);
        let config = self.config.replica.clone();
        let t = id.clone();
        let out = staged.clone();
        blocking(move || {
            for f in crate::tenant::db_files(&out) {
                let _ = std::fs::remove_file(f);
            }
            let bucket = FromBucket::new(config)?;
            // The newest lineage that holds anything: one begun just before a machine died
            // may never have been shipped, and its history then starts where the one
            // before it ended.
            let mut found = false;
            for n in (1..=lineages.len()).rev() {
                if bucket.tenant(&t, &lineages[..n], &out, None)? {
                    found = true;
                    break;
                }
            }
            if !found {
                return Err(PlacementError::Refused(format!(
                    "the bucket holds no replica of tenant {t}"
                )));
            }
            let problems = crate::backup::check_file(&out, false)?;
            if !problems.is_empty() {
                return Err(PlacementError::Refused(format!(
                    "tenant {t}'s restored file fails its check: {}",
                    problems.join("; ")
                )));
            }
            Ok(())
        })
        .await?;
        Ok(staged)
    }

    fn staging_path(&self, id: &TenantId) -> PathBuf {
        self.store
            .pool()
            .layout()
            .root()
            .join("_arrivals")
            .join(format!("{id}.db"))
    }

    /// Takes in a waiting arrival if the directory names this machine at its epoch, drops
    /// it if the directory has moved on; true when the tenant is served here now.
    pub async fn settle_arrival(&self, id: &TenantId) -> Result<bool, PlacementError> {
        let store = self.store.clone();
        let t = id.clone();
        let Some(a) = blocking(move || store.control().arrival(&t)).await? else {
            return Ok(false);
        };
        let entry = self.directory.entry(id).await?;
        let owner = entry.map(|e| e.owner);
        self.remember(id, owner.clone());
        let store = self.store.clone();
        match owner {
            Some(o) if o.machine == self.config.me && o.epoch == a.epoch => {
                blocking(move || store.take_in(&a.tenant, &a.staged_path, &a.passport)).await?;
                tracing::info!(tenant = %id, epoch = o.epoch, "placement: tenant taken in");
                Ok(true)
            }
            // The move it was for was abandoned or superseded.
            Some(o) if o.epoch >= a.epoch => {
                blocking(move || store.drop_arrival(&a.tenant, &a.staged_path)).await?;
                Ok(false)
            }
            // The source has not switched the directory yet.
            _ => Ok(false),
        }
    }

    /// Drops a waiting arrival (the source gave up the move).
    pub async fn cancel_arrival(&self, id: &TenantId) -> Result<(), PlacementError> {
        let store = self.store.clone();
        let t = id.clone();
        let path = self.staging_path(id);
        blocking(move || store.drop_arrival(&t, &path)).await?;
        Ok(())
    }

    /// Resolves what a crash left half-done, from the directory: copies taken over while
    /// this machine was down go; moves out whose switch happened are finished (this copy
    /// goes), the others are forgotten (it stays); arrivals are taken in or dropped. Run
    /// before anything serves or resumes a tenant.
    pub async fn recover(&self) -> Result<(), PlacementError> {
        self.drop_evicted().await?;
        let store = self.store.clone();
        let (moves, arrivals) = blocking(move || {
            Ok::<_, StoreError>((store.control().moves_out()?, store.control().arrivals()?))
        })
        .await?;
        for m in moves {
            let owner = self.directory.entry(&m.tenant).await?.map(|e| e.owner);
            let switched = owner
                .as_ref()
                .is_some_and(|o| o.machine.as_str() == m.to && o.epoch >= m.epoch);
            if switched {
                tracing::info!(tenant = %m.tenant, to = %m.to, "placement: finishing a move a restart interrupted");
                self.let_go(&m.tenant).await?;
            } else {
                tracing::info!(tenant = %m.tenant, "placement: a move a restart interrupted did not happen; the tenant stays");
                self.abandon(&m.tenant).await;
            }
        }
        for a in arrivals {
            self.settle_arrival(&a.tenant).await?;
        }
        Ok(())
    }
}
