//! The placement directory in the replica bucket: one small object per tenant naming the
//! machine that owns it (`placement/tenants/<id>.json`), one per machine saying how to
//! reach it (`placement/machines/<id>.json`), one per WhatsApp number naming its tenant
//! (`placement/whatsapp/<phone_number_id>.json`), and the control rows of each tenant's
//! last move (`placement/passports/<id>.json`). Invariant: a tenant's owner changes only by a
//! conditional PUT against the version the writer read, and each change raises the epoch.

use super::MachineId;
use crate::control::passport::Passport;
use crate::replica::{Bucket, BucketError, Condition};
use crate::tenant::TenantId;
use serde::{Deserialize, Serialize};

/// Who owns a tenant, as the directory says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Owner {
    /// The owning machine.
    pub machine: MachineId,
    /// Raised by every change of owner.
    pub epoch: u64,
    /// When this machine became the owner.
    pub since: String,
}

/// A directory entry with the version a conditional write must match.
#[derive(Debug, Clone)]
pub struct Entry {
    pub owner: Owner,
    pub version: String,
}

/// A machine as it announced itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Machine {
    pub machine: MachineId,
    /// Base URL of its API for the other machines.
    pub url: String,
    /// Tenants registered on it at its last announcement.
    pub tenants: u64,
    /// Its last announcement.
    pub seen_at: String,
    /// True while it is being drained: nothing new is placed on it.
    #[serde(default)]
    pub draining: bool,
}

/// Why the directory could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("the directory entry of {0} changed since it was read")]
    Changed(TenantId),
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("directory object {key} is not valid: {error}")]
    Corrupt { key: String, error: String },
}

/// The directory over the replica bucket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Directory {
    bucket: Bucket,
}

const TENANTS: &str = "placement/tenants";
const PASSPORTS: &str = "placement/passports";
const NUMBERS: &str = "placement/whatsapp";

#[derive(Serialize, Deserialize)]
struct NumberOf {
    tenant: TenantId,
}

#[derive(Serialize, Deserialize)]
struct Stashed {
    epoch: u64,
    passport: Passport,
}
const MACHINES: &str = "placement/machines";

fn decode<T: serde::de::DeserializeOwned>(key: &str, body: &[u8]) -> Result<T, DirectoryError> {
    serde_json::from_slice(body).map_err(|e| DirectoryError::Corrupt {
        key: key.to_owned(),
        error: e.to_string(),
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("directory records serialize")
}

impl Directory {
    pub fn new(bucket: Bucket) -> Directory {
        Directory { bucket }
    }

    fn tenant_key(id: &TenantId) -> String {
        format!("{TENANTS}/{id}.json")
    }

    /// The tenant's entry, if it was ever placed.
    pub async fn entry(&self, id: &TenantId) -> Result<Option<Entry>, DirectoryError> {
        let key = Self::tenant_key(id);
        match self.bucket.read(&key).await? {
            Some((body, version)) => Ok(Some(Entry {
                owner: decode(&key, &body)?,
                version,
            })),
            None => Ok(None),
        }
    }

    /// Places a tenant that has no entry yet on `machine` (epoch 1); `Changed` if it has one.
    pub async fn place(&self, id: &TenantId, machine: &MachineId) -> Result<Entry, DirectoryError> {
        let owner = Owner {
            machine: machine.clone(),
            epoch: 1,
            since: crate::clock::now(),
        };
        let written = self
            .bucket
            .write(&Self::tenant_key(id), encode(&owner), Condition::Absent)
            .await;
        match written {
            Ok(version) => Ok(Entry { owner, version }),
            Err(e) if e.is_conflict() => Err(DirectoryError::Changed(id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the tenant to `to` if its entry is still `from`: the commit point of a move.
    pub async fn switch(
        &self,
        id: &TenantId,
        from: &Entry,
        to: &MachineId,
    ) -> Result<Entry, DirectoryError> {
        let owner = Owner {
            machine: to.clone(),
            epoch: from.owner.epoch + 1,
            since: crate::clock::now(),
        };
        let written = self
            .bucket
            .write(
                &Self::tenant_key(id),
                encode(&owner),
                Condition::Unchanged(from.version.clone()),
            )
            .await;
        match written {
            Ok(version) => Ok(Entry { owner, version }),
            Err(e) if e.is_conflict() => Err(DirectoryError::Changed(id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a tenant's entry (a create that did not happen).
    pub async fn unplace(&self, id: &TenantId) -> Result<(), DirectoryError> {
        Ok(self.bucket.delete(&Self::tenant_key(id)).await?)
    }

    /// Every placed tenant's id (a listing, without reading the entries).
    pub async fn tenant_ids(&self) -> Result<Vec<TenantId>, DirectoryError> {
        Ok(self
            .bucket
            .names(TENANTS)
            .await?
            .iter()
            .filter_map(|n| n.strip_suffix(".json"))
            .filter_map(|n| TenantId::parse(n).ok())
            .collect())
    }

    /// Writes this machine's announcement.
    pub async fn announce(&self, m: &Machine) -> Result<(), DirectoryError> {
        let key = format!("{MACHINES}/{}.json", m.machine);
        self.bucket.write(&key, encode(m), Condition::Any).await?;
        Ok(())
    }

    /// Every machine that announced itself, by id.
    pub async fn machines(&self) -> Result<Vec<Machine>, DirectoryError> {
        let mut out = Vec::new();
        for name in self.bucket.names(MACHINES).await? {
            let key = format!("{MACHINES}/{name}");
            if let Some((body, _)) = self.bucket.read(&key).await? {
                out.push(decode::<Machine>(&key, &body)?);
            }
        }
        out.sort_by(|a, b| a.machine.cmp(&b.machine));
        Ok(out)
    }

    /// The tenant a WhatsApp business number is bound to, anywhere.
    pub async fn number(&self, phone: &str) -> Result<Option<TenantId>, DirectoryError> {
        let key = format!("{NUMBERS}/{phone}.json");
        match self.bucket.read(&key).await? {
            Some((body, _)) => Ok(Some(decode::<NumberOf>(&key, &body)?.tenant)),
            None => Ok(None),
        }
    }

    /// Binds a WhatsApp number to `id` for every machine; `Changed` if another tenant holds
    /// it.
    pub async fn bind_number(&self, phone: &str, id: &TenantId) -> Result<(), DirectoryError> {
        let key = format!("{NUMBERS}/{phone}.json");
        let body = encode(&NumberOf { tenant: id.clone() });
        let when = match self.bucket.read(&key).await? {
            Some((held, _)) if decode::<NumberOf>(&key, &held)?.tenant == *id => return Ok(()),
            Some(_) => return Err(DirectoryError::Changed(id.clone())),
            None => Condition::Absent,
        };
        match self.bucket.write(&key, body, when).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => Err(DirectoryError::Changed(id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Unbinds a WhatsApp number if `id` holds it.
    pub async fn unbind_number(&self, phone: &str, id: &TenantId) -> Result<(), DirectoryError> {
        if self.number(phone).await?.as_ref() == Some(id) {
            self.bucket
                .delete(&format!("{NUMBERS}/{phone}.json"))
                .await?;
        }
        Ok(())
    }

    /// Keeps a moved tenant's control rows as they arrived at the `epoch` that made the
    /// target its owner: a takeover of the target within its first sync still finds them.
    pub async fn stash_passport(
        &self,
        id: &TenantId,
        epoch: u64,
        passport: &Passport,
    ) -> Result<(), DirectoryError> {
        let key = format!("{PASSPORTS}/{id}.json");
        let body = encode(&Stashed {
            epoch,
            passport: passport.clone(),
        });
        self.bucket.write(&key, body, Condition::Any).await?;
        Ok(())
    }

    /// The control rows kept by the last move of `id`, with its epoch.
    pub async fn stashed_passport(
        &self,
        id: &TenantId,
    ) -> Result<Option<(u64, Passport)>, DirectoryError> {
        let key = format!("{PASSPORTS}/{id}.json");
        match self.bucket.read(&key).await? {
            Some((body, _)) => {
                let s: Stashed = decode(&key, &body)?;
                Ok(Some((s.epoch, s.passport)))
            }
            None => Ok(None),
        }
    }

    /// Notes that `machine`'s copy of `id` was taken over while it was down: it lets go of
    /// the copy when it starts again.
    pub async fn evict(&self, machine: &MachineId, id: &TenantId) -> Result<(), DirectoryError> {
        let key = format!("{MACHINES}/{machine}/evicted/{id}");
        self.bucket
            .write(&key, b"{}".to_vec(), Condition::Any)
            .await?;
        Ok(())
    }

    /// The tenants taken over from `machine` while it was down.
    pub async fn evicted(&self, machine: &MachineId) -> Result<Vec<TenantId>, DirectoryError> {
        Ok(self
            .bucket
            .names(&format!("{MACHINES}/{machine}/evicted"))
            .await?
            .iter()
            .filter_map(|n| TenantId::parse(n).ok())
            .collect())
    }

    /// Forgets an eviction once the machine has let go of its copy.
    pub async fn unevict(&self, machine: &MachineId, id: &TenantId) -> Result<(), DirectoryError> {
        Ok(self
            .bucket
            .delete(&format!("{MACHINES}/{machine}/evicted/{id}"))
            .await?)
    }

    /// One machine's announcement.
    pub async fn machine(&self, id: &MachineId) -> Result<Option<Machine>, DirectoryError> {
        let key = format!("{MACHINES}/{id}.json");
        match self.bucket.read(&key).await? {
            Some((body, _)) => Ok(Some(decode(&key, &body)?)),
            None => Ok(None),
        }
    }
}
