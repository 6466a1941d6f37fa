//! Health, readiness, metrics, OpenAPI, JSON errors, request ids, the generated admin token.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let r = app.request(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let r = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["checks"]["control_db_writable"], true);
    assert!(r.body["checks"]["disk_free_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn readiness_fails_when_the_disk_is_nearly_full() {
    let app = spawn_app_with(|c| c.min_free_mb = u64::MAX / (1024 * 1024 * 2)).await;
    let r = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["checks"]["disk_ok"], false);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.new_tenant("m").await;
    app.get_tenant("m", "wrong").await;
    let text = app.metrics().await;
    assert!(
        text.contains(
            r#"tarn_http_requests_total{method="POST",route="/v1/tenants",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"tarn_http_requests_total{method="GET",route="/v1/tenants/{tenant}",status="401"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("tarn_tenant_open_seconds_bucket"));
    assert!(text.contains("tarn_open_tenants"));
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let app = spawn_app().await;
    let r = app.request(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = r.body["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/tenants", "post"),
        ("/v1/tenants", "get"),
        ("/v1/tenants/{tenant}", "get"),
        ("/v1/tenants/{tenant}", "delete"),
        ("/v1/tenants/{tenant}/rotate-key", "post"),
        ("/v1/tenants/{tenant}/restore", "post"),
        ("/v1/tenants/{tenant}/settings", "get"),
        ("/v1/tenants/{tenant}/settings", "patch"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/v1/tenants/{tenant}/parse", "post"),
        ("/v1/tenants/{tenant}/messages", "post"),
        ("/v1/tenants/{tenant}/messages", "get"),
        ("/v1/tenants/{tenant}/actions", "post"),
        ("/v1/tenants/{tenant}/products", "post"),
        ("/v1/tenants/{tenant}/products/{id}", "patch"),
        ("/v1/tenants/{tenant}/customers/{id}", "delete"),
        ("/v1/tenants/{tenant}/staff", "post"),
        ("/v1/tenants/{tenant}/sales", "get"),
        ("/v1/tenants/{tenant}/orders", "get"),
        ("/v1/tenants/{tenant}/reports/sales", "get"),
        ("/v1/tenants/{tenant}/channels/telegram", "put"),
        ("/v1/tenants/{tenant}/channels/whatsapp", "put"),
        ("/webhooks/telegram/{tenant}", "post"),
        ("/webhooks/whatsapp", "get"),
        ("/webhooks/whatsapp", "post"),
        ("/v1/tenants/{tenant}/backup", "get"),
        ("/v1/tenants/{tenant}/schedules", "get"),
        ("/v1/tenants/{tenant}/schedules", "put"),
        ("/v1/tenants/{tenant}/schedules/{kind}/run", "post"),
        ("/v1/tenants/{tenant}/runs", "get"),
        ("/v1/tenants/{tenant}/reports", "get"),
        ("/v1/tenants/{tenant}/reports/{id}/chart.png", "get"),
        ("/v1/tenants/{tenant}/channels", "get"),
        ("/v1/tenants/{tenant}/staff/{id}/chats", "get"),
        ("/v1/tenants/{tenant}/staff/{id}/chats/{chat}", "delete"),
        ("/v1/tenants/{tenant}/staff/{id}/join-code", "post"),
        ("/v1/trash", "get"),
        ("/v1/trash/{tenant}", "delete"),
    ] {
        let op = paths
            .get(path)
            .and_then(|p| p.get(method))
            .unwrap_or_else(|| panic!("{method} {path} is not documented"));
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|k| k.starts_with('2')) && responses.contains_key("500"),
            "{method} {path}: {responses:?}"
        );
        if path.starts_with("/v1/tenants/{tenant}") {
            for status in ["400", "401", "403", "404", "429", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
    // Every documented operation is a route: none falls through to "no such route".
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{tenant}", "nobody")
                .replace("{id}", "1")
                .replace("{chat}", "1")
                .replace("{kind}", "daily_summary");
            let r = app
                .request(
                    method.to_uppercase().parse().unwrap(),
                    &concrete,
                    Some(ADMIN),
                    None,
                )
                .await;
            assert_ne!(
                (r.status, r.body["error"]["message"].as_str()),
                (StatusCode::NOT_FOUND, Some("no such route")),
                "{method} {path}"
            );
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn every_error_is_json() {
    let app = spawn_app_with(|c| c.max_body_bytes = 1024).await;
    let url = format!("{}/v1/tenants", app.base);

    let r = app.request(Method::GET, "/no/such/route", None, None).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "not_found")
    );

    let r = app
        .request(Method::PUT, "/v1/tenants", Some(ADMIN), None)
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );

    let big = json!({"id": "big", "name": "x".repeat(4096)});
    let r = app
        .request(Method::POST, "/v1/tenants", Some(ADMIN), Some(big))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    let send = |body: &'static str, ctype: &'static str| {
        app.client
            .post(&url)
            .bearer_auth(ADMIN)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let r = into_reply(
        send(r#"{"id": "x", "name": "#, "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    let r = into_reply(
        send(r#"{"id":"x","name":"y"}"#, "text/plain")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.error_code(), "unsupported_media_type");
    let nested = format!("{}{}", "[".repeat(400), "]".repeat(400));
    let r = app
        .client
        .post(&url)
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(nested)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        app.list_tenants("").await.body["tenants"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn request_ids_are_set_and_propagated() {
    let app = spawn_app().await;
    let r = app.request(Method::GET, "/healthz", None, None).await;
    assert!(!r.headers["x-request-id"].is_empty());
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn a_missing_admin_token_is_generated_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app_with(|c| c.admin_token = None).await;
    let path = app.data_dir().join("_admin_token");
    let token = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let r = app
        .request(Method::GET, "/v1/tenants", Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.request(Method::GET, "/v1/tenants", Some(ADMIN), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |c| c.admin_token = None).await;
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        token,
        "generated once"
    );
    let r = app
        .request(Method::GET, "/v1/tenants", Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn the_version_is_in_health_and_metrics() {
    let app = spawn_app().await;
    let r = app.request(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.body["version"], env!("CARGO_PKG_VERSION"), "{}", r.text);
    let m = app.metrics().await;
    assert!(
        m.contains(&format!(
            "tarn_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{m}"
    );
}

/// Runs `tarn serve` with `args` until it logs `until` (or exits); its stderr so far.
fn serve_until(args: &[&str], data: &std::path::Path, until: &str) -> (String, bool) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tarn"))
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("TARN_ADMIN_TOKEN", ADMIN)
        .env("TARN_SCHEDULER", "false")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(until) {
            break;
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut out = String::new();
    use std::io::Read;
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    (seen + &out, status.success())
}

#[tokio::test]
async fn serve_takes_its_port_first_and_logs_plain_text_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    // A port someone else holds: the server stops before it creates anything.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("fresh");
    let (log, ok) = serve_until(&["--listen", &port], &data, "tarn listening");
    assert!(!ok && log.contains("cannot listen on"), "{log}");
    assert!(!data.exists(), "nothing created: {log}");
    drop(taken);
    // A server that starts logs no colour codes into a pipe, and the demo banner names the
    // data dir it runs on.
    let (log, _) = serve_until(
        &["--listen", "127.0.0.1:0", "--demo"],
        &data,
        "tarn listening",
    );
    assert!(log.contains("tarn listening"), "{log}");
    assert!(!log.contains('\u{1b}'), "no ANSI escapes: {log:?}");
    assert!(
        log.contains(&format!("chat demo --as Sam --data-dir {}", data.display())),
        "{log}"
    );
    // A short operator token is refused on any address but loopback.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("weak"))
        .env("TARN_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 16"));
}

#[tokio::test]
async fn the_operator_token_is_shown_and_rotated_without_a_restart() {
    let app = spawn_app_with(|c| c.admin_token = None).await;
    let cli = |verb: &str| tarn_ok(&["token", verb], &app.data_dir()).trim().to_owned();
    let old = cli("show");
    assert_eq!(
        old,
        std::fs::read_to_string(app.data_dir().join("_admin_token")).unwrap()
    );
    let list = |token: String| {
        let app = &app;
        async move {
            app.request(Method::GET, "/v1/tenants", Some(&token), None)
                .await
                .status
        }
    };
    assert_eq!(list(old.clone()).await, StatusCode::OK);
    let new = cli("rotate");
    assert_ne!(new, old);
    assert_eq!(
        list(old).await,
        StatusCode::UNAUTHORIZED,
        "the old token stops at once"
    );
    assert_eq!(list(new).await, StatusCode::OK);
}

#[tokio::test]
async fn error_messages_speak_the_apis_words_not_rusts() {
    let app = spawn_app().await;
    app.shop("w").await;
    let raw = |method: Method, path: &str, body: &str| {
        let req = app
            .client
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body.to_owned());
        async move { into_reply(req.send().await.unwrap()).await }
    };
    for (method, path, body, says) in [
        (
            Method::POST,
            "/v1/tenants/w/messages",
            r#"["/sale 1 rice"]"#,
            "must be a JSON object",
        ),
        (
            Method::POST,
            "/v1/tenants/w/messages",
            r#"{"text": 5}"#,
            "expected a string",
        ),
        (
            Method::GET,
            "/v1/tenants/w/products/abc",
            "",
            "is not a whole number",
        ),
        (
            Method::GET,
            "/v1/tenants/w/messages?limit=x",
            "",
            "must be a whole number",
        ),
        (
            Method::POST,
            "/v1/tenants/w/staff",
            r#"{"name": "A", "role": "boss"}"#,
            "unknown variant",
        ),
        (
            Method::POST,
            "/v1/tenants/w/products",
            r#"{"name": "A", "price": true}"#,
            "expected a number",
        ),
    ] {
        let r = raw(method.clone(), path, body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body}: {}",
            r.text
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{method} {path} {body}: {message}");
        for internal in [
            "struct",
            "TextBody",
            "i64",
            "usize",
            "untagged",
            "Failed to",
            "builder error",
            "enum ",
        ] {
            assert!(!message.contains(internal), "{path} {body}: {message}");
        }
    }
}
