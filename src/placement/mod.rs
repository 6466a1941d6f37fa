//! Several machines, each owning a share of the tenants: which machine owns a tenant (the
//! directory in the replica bucket, read through a cache that a move's notice clears), where
//! a request for it goes (`Route`), moves (`handover`) and this machine's announcement.
//! Invariant: a machine serves a tenant only while its file is here and not fenced; a file
//! arrives only after the directory names this machine, and leaves only after the directory
//! names another.

pub mod directory;
mod handover;
mod rescue;

pub use directory::{Directory, DirectoryError, Entry, Machine, Owner};
pub use handover::{ArrivalIn, MoveReport};

use crate::config::{PlacementArgs, Secret};
use crate::replica::{ReplicaConfig, Replicator, restore::RestoreError};
use crate::store::Store;
use crate::tenant::{StoreError, TenantId};
use dashmap::DashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A machine's id: what Fly calls it (`FLY_MACHINE_ID`), or the operator's name for it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct MachineId(String);

impl MachineId {
    /// Checks an id: 1-64 of `a-z`, `0-9`, `-` and `_`, starting with a letter or digit.
    pub fn parse(s: &str) -> Result<MachineId, String> {
        let ok = (1..=64).contains(&s.len())
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(MachineId(s.to_owned()))
        } else {
            Err(format!(
                "machine id {s:?} must be 1-64 lowercase letters, digits, '-' or '_'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for MachineId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MachineId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for MachineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How placement runs on this machine.
#[derive(Debug, Clone)]
pub struct PlacementConfig {
    pub me: MachineId,
    /// How the other machines reach this one.
    pub url: String,
    /// How long another tenant's owner is trusted once read.
    pub cache_ttl: Duration,
    /// The operator token every machine shares (machine-to-machine calls carry it).
    pub token: Secret,
    /// The bucket (directory and replicas) and Litestream, for restores.
    pub replica: ReplicaConfig,
}

impl PlacementConfig {
    /// The settings from the flags and Fly's environment: `None` with no machine id (one
    /// machine); an error when placement lacks what it needs.
    pub fn from_args(
        args: &PlacementArgs,
        machine: Option<String>,
        listen: SocketAddr,
        token: Option<&Secret>,
        replica: Option<&ReplicaConfig>,
        max_body_bytes: usize,
    ) -> Result<Option<PlacementConfig>, String> {
        let fly = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let Some(me) = machine else {
            return Ok(None);
        };
        let me = MachineId::parse(&me)?;
        let Some(replica) = replica else {
            return Err("several machines need the bucket: set TARN_REPLICA_URL".into());
        };
        let Some(token) = token else {
            return Err(
                "several machines need one shared operator token: set TARN_ADMIN_TOKEN".into(),
            );
        };
        if max_body_bytes > REPLAY_LIMIT {
            return Err(format!(
                "TARN_MAX_BODY_BYTES ({max_body_bytes}) is over the 1 MB a replay can carry"
            ));
        }
        let url = match (&args.machine_url, fly("FLY_APP_NAME")) {
            (Some(u), _) => u.trim_end_matches('/').to_owned(),
            (None, Some(app)) => format!("http://{me}.vm.{app}.internal:{}", listen.port()),
            (None, None) => format!("http://{listen}"),
        };
        Ok(Some(PlacementConfig {
            me,
            url,
            cache_ttl: Duration::from_millis(args.placement_cache_ms),
            token: token.clone(),
            replica: replica.clone(),
        }))
    }
}

/// The machine named by `instance=` in a `fly-replay` or `fly-replay-src` value
/// (`field=value` pairs split by `;`).
pub fn instance_in(value: &str) -> Option<MachineId> {
    value
        .split(';')
        .find_map(|field| field.trim().strip_prefix("instance="))
        .and_then(|m| MachineId::parse(m).ok())
}

/// Longest a machine trusts that a tenant is placed nowhere.
const ABSENT_TTL: Duration = Duration::from_secs(2);

/// Largest request body Fly's proxy replays.
pub const REPLAY_LIMIT: usize = 1024 * 1024;

/// Where a request for a tenant goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This machine serves it (it owns it, or nobody placed it: the handler says 404).
    Here,
    /// It is between machines (or the request was replayed here by a stale cache): retry.
    Moving,
    /// Replay it to the owner.
    Elsewhere(Owner),
    /// Replayed here by a machine whose cache is stale; the owner is elsewhere: retry (the
    /// machine that replayed it is told to forget what it cached).
    Stale(Owner),
}

/// Why placement could not route, move or take in a tenant.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("tenant {tenant} is owned by machine {owner}, not this one")]
    NotOwner { tenant: TenantId, owner: MachineId },
    #[error("no machine {0} has announced itself in the directory")]
    UnknownMachine(MachineId),
    #[error("{0}")]
    Refused(String),
    #[error("machine {machine} answered {status}: {said}")]
    Peer {
        machine: MachineId,
        status: u16,
        said: String,
    },
    #[error("cannot reach machine {machine}: {error}")]
    Unreachable { machine: MachineId, error: String },
    #[error(
        "tenant {0}'s final sync to the bucket failed; it stays here (check replication, then move again)"
    )]
    FinalSync(TenantId),
    #[error(
        "the directory switch of tenant {0} has an unknown outcome; it stays fenced until this machine resolves it at its next start or move"
    )]
    InDoubt(TenantId),
}

/// Placement on this machine. Cheap to share (`Arc`).
pub struct Placement {
    config: PlacementConfig,
    directory: Directory,
    store: Store,
    replicator: Arc<Replicator>,
    /// Owners read from the directory, with when they were read.
    cache: DashMap<TenantId, (Option<Owner>, Instant)>,
    http: reqwest::Client,
    /// Tenants a move (out or in) is under way for here: one at a time per tenant.
    busy: std::sync::Mutex<std::collections::HashSet<TenantId>>,
    /// One restore of a dead machine's registry at a time (`rescue`).
    rescue: Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Placement({})", self.config.me)
    }
}

impl Placement {
    pub fn new(
        config: PlacementConfig,
        store: Store,
        replicator: Arc<Replicator>,
    ) -> Arc<Placement> {
        let directory = Directory::new(replicator.bucket().clone());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a plain HTTP client builds");
        Arc::new(Placement {
            config,
            directory,
            store,
            replicator,
            cache: DashMap::new(),
            http,
            busy: Default::default(),
            rescue: Default::default(),
        })
    }

    /// This machine's id.
    pub fn me(&self) -> &MachineId {
        &self.config.me
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Where a request for `id` goes. `replayed`: the request was replayed here already
    /// (`fly-replay-src`), so the owner is read afresh and there is no second hop.
    pub async fn route(&self, id: &TenantId, replayed: bool) -> Result<Route, PlacementError> {
        if self.store.pool().is_fenced(id) {
            return Ok(Route::Moving);
        }
        if self.store.pool().layout().tenant_db(id).exists() {
            return Ok(Route::Here);
        }
        let owner = if replayed {
            self.read_owner(id).await?
        } else {
            self.owner(id).await?
        };
        match owner {
            None => Ok(Route::Here),
            Some(o) if o.machine == self.config.me => {
                self.settle_arrival(id).await?;
                Ok(Route::Here)
            }
            Some(o) if replayed => Ok(Route::Stale(o)),
            Some(o) => Ok(Route::Elsewhere(o)),
        }
    }

    /// The tenant's owner, from the cache while it is fresh: an owner for `cache_ttl` (or
    /// until a move's notice says to forget it), "not placed" for at most `ABSENT_TTL` (a
    /// tenant created on another machine is found soon).
    pub async fn owner(&self, id: &TenantId) -> Result<Option<Owner>, PlacementError> {
        if let Some(hit) = self.cache.get(id) {
            let ttl = match hit.0 {
                Some(_) => self.config.cache_ttl,
                None => self.config.cache_ttl.min(ABSENT_TTL),
            };
            if hit.1.elapsed() < ttl {
                return Ok(hit.0.clone());
            }
        }
        self.read_owner(id).await
    }

    /// Drops what this machine cached of `id`'s owner (another machine moved it).
    pub fn forget(&self, id: &TenantId) {
        self.cache.remove(id);
    }

    /// Tells the other machines (all but `skip`) that `id` changed owner, so none replays
    /// to its old owner until its cache expires. In the background; a machine that misses
    /// the notice learns at its first stale replay (`Route::Stale`).
    pub fn spread_news(self: &Arc<Self>, id: &TenantId, skip: &[&MachineId]) {
        let me = self.clone();
        let id = id.clone();
        let skip: Vec<MachineId> = skip.iter().map(|m| (*m).clone()).collect();
        tokio::spawn(async move {
            let machines = match me.directory.machines().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(tenant = %id, error = %e, "placement: cannot list machines to tell of a move");
                    return;
                }
            };
            for m in machines {
                if m.machine == me.config.me || skip.contains(&m.machine) {
                    continue;
                }
                me.tell_forget(&m.machine, &m.url, &id).await;
            }
        });
    }

    /// Tells `machine` that its cached owner of `id` is stale (it replayed a request here).
    pub fn tell_stale(self: &Arc<Self>, machine: &MachineId, id: &TenantId) {
        if *machine == self.config.me {
            return;
        }
        let (me, machine, id) = (self.clone(), machine.clone(), id.clone());
        tokio::spawn(async move {
            match me.directory.machine(&machine).await {
                Ok(Some(m)) => me.tell_forget(&machine, &m.url, &id).await,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(machine = %machine, error = %e, "placement: cannot find a machine to correct its cache")
                }
            }
        });
    }

    async fn tell_forget(&self, machine: &MachineId, url: &str, id: &TenantId) {
        let path = format!("tenants/{id}/forget");
        if let Err(e) = self
            .call(machine, url, reqwest::Method::POST, &path, None::<&()>)
            .await
        {
            tracing::debug!(machine = %machine, tenant = %id, error = %e, "placement: a machine missed a move's notice");
        }
    }

    /// The tenant's owner read from the directory (and cached).
    async fn read_owner(&self, id: &TenantId) -> Result<Option<Owner>, PlacementError> {
        let owner = self.directory.entry(id).await?.map(|e| e.owner);
        self.remember(id, owner.clone());
        Ok(owner)
    }

    fn remember(&self, id: &TenantId, owner: Option<Owner>) {
        // Bounded: a tenant is cached only when a request for it came to the wrong machine.
        if self.cache.len() > 100_000 {
            self.cache
                .retain(|_, v| v.1.elapsed() < self.config.cache_ttl);
        }
        self.cache.insert(id.clone(), (owner, Instant::now()));
    }

    /// Where a new tenant goes: the non-draining machine with the fewest tenants (this one
    /// on a tie, or when no other has announced itself).
    pub async fn place_new(&self) -> Result<MachineId, PlacementError> {
        let machines = self.directory.machines().await?;
        let mine = machines
            .iter()
            .find(|m| m.machine == self.config.me)
            .map_or(0, |m| m.tenants);
        let best = machines
            .iter()
            .filter(|m| !m.draining && m.machine != self.config.me)
            .min_by_key(|m| (m.tenants, m.machine.clone()));
        let me_draining = machines
            .iter()
            .any(|m| m.machine == self.config.me && m.draining);
        Ok(match best {
            Some(b) if me_draining || b.tenants < mine => b.machine.clone(),
            _ => self.config.me.clone(),
        })
    }

    /// Claims `id` for this machine in the directory before it is created here: `Changed`
    /// if another machine holds it. An entry naming this machine (a deleted tenant's) is
    /// kept.
    pub async fn claim(&self, id: &TenantId) -> Result<bool, PlacementError> {
        match self.directory.entry(id).await? {
            Some(e) if e.owner.machine == self.config.me => Ok(false),
            Some(e) => Err(PlacementError::NotOwner {
                tenant: id.clone(),
                owner: e.owner.machine,
            }),
            None => {
                let e = self.directory.place(id, &self.config.me).await?;
                self.remember(id, Some(e.owner));
                Ok(true)
            }
        }
    }

    /// Takes back a claim made for a create that failed.
    pub async fn unclaim(&self, id: &TenantId) {
        if let Err(e) = self.directory.unplace(id).await {
            tracing::warn!(tenant = %id, error = %e, "placement: a failed create's directory entry stays");
        }
        self.cache.remove(id);
    }

    /// Writes this machine's announcement (its URL and tenant count), keeping its draining
    /// mark unless `draining` says otherwise.
    pub async fn announce(&self, draining: Option<bool>) -> Result<Machine, PlacementError> {
        let store = self.store.clone();
        let tenants = crate::tenant::pool::blocking(move || store.control().active_count()).await?;
        let was = self.directory.machine(&self.config.me).await?;
        let m = Machine {
            machine: self.config.me.clone(),
            url: self.config.url.clone(),
            tenants,
            seen_at: crate::clock::now(),
            draining: draining.unwrap_or(was.is_some_and(|w| w.draining)),
        };
        self.directory.announce(&m).await?;
        Ok(m)
    }

    /// Announces this machine now and every `every` after, until the task is aborted.
    pub fn keep_announcing(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = me.announce(None).await {
                    tracing::warn!(error = %e, "placement: cannot announce this machine");
                }
            }
        })
    }

    /// Marks a machine as draining (or not) in its announcement.
    pub async fn set_draining(
        &self,
        machine: &MachineId,
        draining: bool,
    ) -> Result<Machine, PlacementError> {
        if *machine == self.config.me {
            return self.announce(Some(draining)).await;
        }
        let mut m = self
            .directory
            .machine(machine)
            .await?
            .ok_or_else(|| PlacementError::UnknownMachine(machine.clone()))?;
        m.draining = draining;
        self.directory.announce(&m).await?;
        Ok(m)
    }

    /// Binds a WhatsApp number to a tenant for every machine; `Refused` if another tenant
    /// holds it.
    pub async fn bind_number(&self, phone: &str, id: &TenantId) -> Result<(), PlacementError> {
        match self.directory.bind_number(phone, id).await {
            Err(DirectoryError::Changed(_)) => Err(PlacementError::Refused(format!(
                "WhatsApp number {phone} is bound to another tenant"
            ))),
            done => Ok(done?),
        }
    }

    /// Unbinds a WhatsApp number from a tenant for every machine.
    pub async fn unbind_number(&self, phone: &str, id: &TenantId) -> Result<(), PlacementError> {
        Ok(self.directory.unbind_number(phone, id).await?)
    }

    /// The owner of the tenant a WhatsApp number is bound to.
    pub async fn owner_of_number(&self, phone: &str) -> Result<Option<Owner>, PlacementError> {
        match self.directory.number(phone).await? {
            Some(t) => self.owner(&t).await,
            None => Ok(None),
        }
    }

    /// Hands one number's part of a WhatsApp delivery to the machine that owns its tenant,
    /// over the private network; Ok once that machine has stored it.
    pub async fn forward_whatsapp(
        &self,
        machine: &MachineId,
        part: Vec<u8>,
    ) -> Result<(), PlacementError> {
        let m = self
            .directory
            .machine(machine)
            .await?
            .ok_or_else(|| PlacementError::UnknownMachine(machine.clone()))?;
        let res = self
            .http
            .post(format!("{}/v1/placement/whatsapp", m.url))
            .bearer_auth(self.config.token.expose())
            .header("content-type", "application/json")
            .body(part)
            .send()
            .await
            .map_err(|e| PlacementError::Unreachable {
                machine: machine.clone(),
                error: e.to_string(),
            })?;
        if res.status().is_success() {
            return Ok(());
        }
        Err(PlacementError::Peer {
            machine: machine.clone(),
            status: res.status().as_u16(),
            said: res
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(500)
                .collect(),
        })
    }

    /// Marks this machine busy with a move of `id`; `Refused` if one is under way.
    fn start_work(&self, id: &TenantId) -> Result<BusyGuard<'_>, PlacementError> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(id.clone()) {
            return Err(PlacementError::Refused(format!(
                "a move of tenant {id} is already under way here"
            )));
        }
        Ok(BusyGuard {
            placement: self,
            id: id.clone(),
        })
    }
}

/// Ends a move's hold on its tenant when dropped.
struct BusyGuard<'a> {
    placement: &'a Placement,
    id: TenantId,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.placement
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_are_checked() {
        for ok in ["148e1d2f4b2589", "m1", "tarn-a_2"] {
            assert_eq!(MachineId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "-m", "M1", "m 1", "m/1", &"a".repeat(65)] {
            assert!(MachineId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
