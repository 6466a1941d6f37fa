//! The replica URL (`TARN_REPLICA_URL`): where Litestream ships each database, and the one
//! place a database's replica address is built. Invariant: it is an `s3://` URL with a
//! bucket and no credentials in it; a database's address is the base plus its key prefix,
//! `tenants/<id>/<lineage>` or `control/<lineage>`.

use crate::control::lineage::Lineage;
use crate::tenant::TenantId;

/// A validated `s3://bucket[/prefix][?endpoint=…&region=…]` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplicaUrl {
    /// `s3://bucket/prefix`, without a trailing slash.
    base: String,
    /// `?…` or empty: Litestream's options (endpoint, region, force-path-style …).
    query: String,
    /// Key prefix of the registry's lineages: `control`, or `machines/<id>/control` when
    /// several machines share the bucket.
    control_dir: String,
}

impl std::fmt::Debug for ReplicaUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.base, self.query)
    }
}

impl std::fmt::Display for ReplicaUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.base, self.query)
    }
}

impl std::str::FromStr for ReplicaUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (base, query) = match s.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (s, String::new()),
        };
        let Some(rest) = base.strip_prefix("s3://") else {
            return Err(format!(
                "replica URL {base:?} must start with s3:// (S3, Tigris, R2, MinIO …)"
            ));
        };
        let bucket = rest.split('/').next().unwrap_or_default();
        if bucket.is_empty() {
            return Err("the replica URL names no bucket: use s3://BUCKET/PREFIX".into());
        }
        if bucket.contains('@') {
            return Err(
                "put the bucket's credentials in TARN_REPLICA_ACCESS_KEY_ID and \
                 TARN_REPLICA_SECRET_ACCESS_KEY, not in the URL"
                    .into(),
            );
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the replica URL contains spaces or control characters".into());
        }
        Ok(ReplicaUrl {
            base: base.trim_end_matches('/').to_owned(),
            query,
            control_dir: "control".to_owned(),
        })
    }
}

/// The bucket and how to reach it, as Litestream reads them from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix of everything tarn writes (no leading or trailing slash; may be empty).
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style requests (the default with a custom endpoint, as in Litestream).
    pub path_style: bool,
}

impl ReplicaUrl {
    fn at(&self, suffix: &str) -> String {
        format!("{}/{suffix}{}", self.base, self.query)
    }

    /// Key prefix (under the URL's own) of a tenant's lineages.
    pub fn tenant_dir(id: &TenantId) -> String {
        format!("tenants/{id}")
    }

    /// The same bucket for one of several machines: its registry's lineages go under
    /// `machines/<machine>/control` (tenants' stay shared: they move between machines).
    pub fn for_machine(mut self, machine: &str) -> ReplicaUrl {
        self.control_dir = format!("machines/{machine}/control");
        self
    }

    /// Key prefix (under the URL's own) of the registry's lineages.
    pub fn control_dir(&self) -> &str {
        &self.control_dir
    }

    /// Where one lineage of a tenant's file is replicated.
    pub fn tenant(&self, id: &TenantId, lineage: &Lineage) -> String {
        self.at(&format!("{}/{lineage}", Self::tenant_dir(id)))
    }

    /// Where one lineage of the control database (the registry) is replicated.
    pub fn control(&self, lineage: &Lineage) -> String {
        self.at(&format!("{}/{lineage}", self.control_dir))
    }

    /// The bucket, prefix and connection options.
    pub fn location(&self) -> S3Location {
        let rest = self.base.strip_prefix("s3://").unwrap_or(&self.base);
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(self.query.trim_start_matches('?').as_bytes())
                .into_owned()
                .collect();
        let get = |keys: &[&str]| {
            query
                .iter()
                .find(|(k, _)| keys.contains(&k.as_str()))
                .map(|(_, v)| v.clone())
        };
        let endpoint = get(&["endpoint"]).map(|e| {
            if e.contains("://") {
                e
            } else {
                format!("https://{e}")
            }
        });
        let path_style = match get(&["forcePathStyle", "force-path-style"]).as_deref() {
            Some(v) => v == "true",
            None => endpoint.is_some(),
        };
        S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint,
            region: get(&["region"]),
            path_style,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_keep_the_options_after_the_path() {
        let url: ReplicaUrl = "s3://shops/prod/?endpoint=http://127.0.0.1:9000&region=auto"
            .parse()
            .unwrap();
        let id = TenantId::parse("acme").unwrap();
        let l = Lineage::parse("20261127T013000123Z-5f3a").unwrap();
        assert_eq!(
            url.tenant(&id, &l),
            "s3://shops/prod/tenants/acme/20261127T013000123Z-5f3a?endpoint=http://127.0.0.1:9000&region=auto"
        );
        assert_eq!(
            url.control(&l),
            "s3://shops/prod/control/20261127T013000123Z-5f3a?endpoint=http://127.0.0.1:9000&region=auto"
        );
        assert_eq!(
            url.location(),
            S3Location {
                bucket: "shops".into(),
                prefix: "prod".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("auto".into()),
                path_style: true,
            }
        );
        let bare: ReplicaUrl = "s3://shops".parse().unwrap();
        assert_eq!(
            bare.control(&l),
            "s3://shops/control/20261127T013000123Z-5f3a"
        );
        let loc = bare.location();
        assert_eq!((loc.prefix.as_str(), loc.path_style), ("", false));
        let hosted: ReplicaUrl = "s3://b/p?endpoint=fly.storage.tigris.dev&forcePathStyle=false"
            .parse()
            .unwrap();
        let loc = hosted.location();
        assert_eq!(
            (loc.endpoint.as_deref(), loc.path_style),
            (Some("https://fly.storage.tigris.dev"), false)
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("https://x/y", "must start with s3://"),
            ("s3:///prefix", "no bucket"),
            ("s3://key:secret@bucket/p", "credentials"),
            ("s3://b/p q", "spaces"),
        ] {
            let err = url.parse::<ReplicaUrl>().unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
    }
}
