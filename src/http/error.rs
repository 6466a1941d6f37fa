//! The one HTTP error type and the JSON body extractor that reports bad input through it.
//! Invariant: every error answer is `{"error": {"code", "message"}}`; internal errors are
//! logged with their cause and answered with a generic 500 that carries no SQL or paths.

use crate::tenant::{InvalidTenantId, StoreError};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with an explicit status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 503 with `Retry-After: 1`: the tenant is between machines; the retry finds its owner.
    pub fn moving(id: &crate::tenant::TenantId) -> Self {
        Self::retry_soon(
            "tenant_moving",
            format!("tenant {id} is moving to another machine; retry shortly"),
        )
    }

    /// 503 with `Retry-After: 1`.
    pub fn retry_soon(code: &'static str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after = Some(1);
        e
    }

    /// 429 with `Retry-After`.
    pub fn too_many(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// 507: the disk is (nearly) full; nothing was written.
    pub fn storage_full() -> Self {
        let mut e = Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            "the server is out of disk space; nothing was written; try again later",
        );
        e.retry_after = Some(60);
        e
    }

    /// The answer to SQLite errors that are conditions, not bugs: a full disk, a statement
    /// stopped by the statement timeout, a lock held too long.
    fn from_sqlite(e: &rusqlite::Error) -> Option<Self> {
        use rusqlite::ErrorCode;
        let rusqlite::Error::SqliteFailure(f, _) = e else {
            return None;
        };
        match f.code {
            ErrorCode::DiskFull => Some(Self::storage_full()),
            ErrorCode::OperationInterrupted => Some(Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request ran too long and was stopped; nothing was written",
            )),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Some(Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the shop is busy; try again",
            )),
            _ => None,
        }
    }

    /// 400 with code `invalid_input`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A 500 whose cause is logged, never sent.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code for a status, for errors produced outside tarn's handlers.
    pub fn code_for(status: StatusCode) -> &'static str {
        match status {
            StatusCode::BAD_REQUEST => "invalid_input",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::REQUEST_TIMEOUT => "timeout",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_input",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::INSUFFICIENT_STORAGE => "insufficient_storage",
            s if s.is_server_error() => "internal",
            _ => "error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        response
    }
}

impl From<InvalidTenantId> for ApiError {
    fn from(e: InvalidTenantId) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_tenant_id", e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("tenant {id} not found"),
            ),
            StoreError::AlreadyExists(id) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("tenant {id} already exists"),
            ),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => ApiError::bad_request(m),
            StoreError::Busy(id) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("tenant {id} is busy; try again"),
            ),
            StoreError::Moving(id) => ApiError::moving(&id),
            StoreError::SchemaTooNew { .. } => {
                tracing::error!(error = %e, "tenant file is newer than this binary");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "schema_too_new",
                    "this tenant's data needs a newer version of the server",
                )
            }
            StoreError::Sqlite(e) => e.into(),
            StoreError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                tracing::warn!("out of disk space");
                Self::storage_full()
            }
            e => ApiError::internal("storage error", &e),
        }
    }
}

impl From<crate::shop::ExecError> for ApiError {
    fn from(e: crate::shop::ExecError) -> Self {
        use crate::shop::ExecError;
        match e {
            ExecError::Invalid(m) => ApiError::bad_request(m),
            ExecError::UnknownSender(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "unknown_sender", m)
            }
            ExecError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            ExecError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            ExecError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            ExecError::Store(e) => e.into(),
            ExecError::Db(e) => e.into(),
        }
    }
}

impl From<crate::shop::report::ReportError> for ApiError {
    fn from(e: crate::shop::report::ReportError) -> Self {
        crate::shop::ExecError::from(e).into()
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        match Self::from_sqlite(&e) {
            Some(answer) => {
                tracing::warn!(error = %e, "storage condition");
                answer
            }
            None => ApiError::internal("tenant database error", &e),
        }
    }
}

/// `axum::Json` whose rejections are `ApiError`s: malformed or mistyped JSON is a 400,
/// a missing JSON content type a 415, an oversized body a 413.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let rejected = |status: StatusCode, text: String| {
            let status = match status {
                StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
                s => s,
            };
            ApiError::new(status, ApiError::code_for(status), plain(&text))
        };
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|t| {
                t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON, with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| rejected(r.status(), r.body_text()))?;
        // Every body is an object: serde would also take a list as a struct's fields.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(rejected(rejection.status(), rejection.body_text())),
        }
    }
}

/// `axum::extract::Path` whose rejections are 400s in the API's words.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => Err(ApiError::bad_request(plain(&rejection.body_text()))),
        }
    }
}

/// `axum::extract::Query` whose rejections are 400s in the API's words; a parameter with
/// an empty value (`?after=`) counts as absent.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let given: Vec<&str> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty() && !pair.ends_with('='))
            .collect();
        let uri: axum::http::Uri = format!("/?{}", given.join("&"))
            .parse()
            .map_err(|_| ApiError::bad_request("the query string is malformed"))?;
        match axum::extract::Query::<T>::try_from_uri(&uri) {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(ApiError::bad_request(plain(&rejection.body_text()))),
        }
    }
}

/// A rejection's text in the API's words: no Rust type names, no parser internals.
pub fn plain(text: &str) -> String {
    const PREFIXES: &[(&str, &str)] = &[
        (
            "Failed to deserialize the JSON body into the target type: ",
            "",
        ),
        (
            "Failed to parse the request body as JSON: ",
            "the body is not valid JSON: ",
        ),
        (
            "Failed to buffer the request body: ",
            "the body could not be read: ",
        ),
        ("Failed to deserialize query string: ", ""),
        ("Failed to deserialize path parameters: ", ""),
        ("Invalid URL: ", ""),
    ];
    let mut out = text.trim().to_owned();
    for (prefix, with) in PREFIXES {
        if let Some(rest) = out.strip_prefix(prefix) {
            out = format!("{with}{rest}");
        }
    }
    // "Cannot parse `abc` to a `i64`", "Cannot parse value at index 1 with value `abc` to a
    // `i64`" -> "`abc` is not a whole number"
    if let Some(rest) = out.strip_prefix("Cannot parse ") {
        let rest = rest.split_once("with value `").map_or(rest, |(_, r)| r);
        if let Some((value, ty)) = rest.trim_start_matches('`').split_once("` to a `") {
            out = format!("`{value}` is not {}", type_words(ty.trim_end_matches('`')));
        }
    }
    // "expected struct TextBody with 3 elements" / "expected enum Role": what is wanted.
    let mut words: Vec<String> = Vec::new();
    let mut it = out.split(' ').peekable();
    while let Some(w) = it.next() {
        match (w, it.peek()) {
            ("struct" | "enum", Some(_)) => {
                let name = it.next().unwrap_or("");
                let mut said = if w == "struct" {
                    "an object".to_owned()
                } else {
                    "one of the allowed values".to_owned()
                };
                let mut tail = name;
                if it.peek() == Some(&"with") {
                    it.next();
                    it.next();
                    tail = it.next().unwrap_or("");
                }
                if tail.ends_with(',') {
                    said.push(',');
                }
                words.push(said);
            }
            _ => words.push(w.to_owned()),
        }
    }
    let mut out = words.join(" ");
    for (from, to) in [
        ("invalid digit found in string", "must be a whole number"),
        (
            "cannot parse integer from empty string",
            "must be a whole number",
        ),
        ("number too large to fit in target type", "is too large"),
        ("invalid type: sequence", "invalid type: a list"),
        ("invalid type: map", "invalid type: an object"),
        (
            "data did not match any variant of untagged enum",
            "no accepted form matches",
        ),
        ("expected i64", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        out = out.replace(from, to);
    }
    out
}

/// A Rust number or boolean type as the API says it.
fn type_words(ty: &str) -> &'static str {
    match ty {
        "f32" | "f64" => "a number",
        "bool" => "true or false",
        t if t.starts_with('i') || t.starts_with('u') => "a whole number",
        _ => "of the expected kind",
    }
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn rejections_speak_the_apis_words() {
        for (raw, said) in [
            (
                "Failed to deserialize the JSON body into the target type: invalid type: sequence, expected struct TextBody with 3 elements at line 1 column 0",
                "invalid type: a list, expected an object at line 1 column 0",
            ),
            (
                "Invalid URL: Cannot parse `abc` to a `i64`",
                "`abc` is not a whole number",
            ),
            (
                "Failed to deserialize query string: limit: invalid digit found in string",
                "limit: must be a whole number",
            ),
            (
                "Failed to deserialize the JSON body into the target type: role: unknown variant `boss`, expected one of `owner`, `manager` at line 1 column 15",
                "role: unknown variant `boss`, expected one of `owner`, `manager` at line 1 column 15",
            ),
            (
                "Failed to deserialize the JSON body into the target type: invalid type: string \"x\", expected i64 at line 1 column 9",
                "invalid type: string \"x\", expected a whole number at line 1 column 9",
            ),
            (
                "Failed to deserialize the JSON body into the target type: invalid type: integer `5`, expected enum Role",
                "invalid type: integer `5`, expected one of the allowed values",
            ),
        ] {
            assert_eq!(plain(raw), said);
        }
    }
}
