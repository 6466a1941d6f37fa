//! The replica URL (`TARN_REPLICA_URL`): where Litestream ships each database, and the one
//! place a database's replica address is built. Invariant: it is an `s3://` URL with a
//! bucket and no credentials in it; a database's address is the base plus a fixed suffix.

use crate::tenant::TenantId;

/// A validated `s3://bucket[/prefix][?endpoint=…&region=…]` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplicaUrl {
    /// `s3://bucket/prefix`, without a trailing slash.
    base: String,
    /// `?…` or empty: Litestream's options (endpoint, region, force-path-style …).
    query: String,
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
        })
    }
}

impl ReplicaUrl {
    fn at(&self, suffix: &str) -> String {
        format!("{}/{suffix}{}", self.base, self.query)
    }

    /// Where a tenant's file is replicated.
    pub fn tenant(&self, id: &TenantId) -> String {
        self.at(&format!("tenants/{id}"))
    }

    /// Where the control database (the registry) is replicated.
    pub fn control(&self) -> String {
        self.at("control")
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
        assert_eq!(
            url.tenant(&id),
            "s3://shops/prod/tenants/acme?endpoint=http://127.0.0.1:9000&region=auto"
        );
        assert_eq!(
            url.control(),
            "s3://shops/prod/control?endpoint=http://127.0.0.1:9000&region=auto"
        );
        let bare: ReplicaUrl = "s3://shops".parse().unwrap();
        assert_eq!(bare.control(), "s3://shops/control");
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
