//! `spawn_app()` and `TestApp`: a real server on a temp data dir, with typed requests.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tarn::app::App;
use tarn::config::{Secret, ServeConfig};
use tempfile::TempDir;

pub const ADMIN: &str = "test-admin-token";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// An answer: status and JSON body (`Value::Null` when the body is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_app_in(dir, tweak).await
}

pub async fn spawn_app_in(dir: TempDir, tweak: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let mut config = ServeConfig::with_data_dir(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_token = Some(Secret::new(ADMIN));
    // Tests that are not about the ticker stay clear of the wall clock's hourly jobs.
    config.scheduler.enabled = false;
    tweak(&mut config);
    let app = App::build(config).await.expect("server starts");
    let base = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::new(),
        dir,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server gracefully and hands back the temp dir.
    pub async fn stop(mut self) -> TempDir {
        let _ = self.shutdown.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap().unwrap();
        self.dir
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_reply(req.send().await.expect("request sent")).await
    }

    pub async fn create_tenant(&self, id: &str, name: &str) -> Reply {
        self.request(
            Method::POST,
            "/v1/tenants",
            Some(ADMIN),
            Some(json!({"id": id, "name": name})),
        )
        .await
    }

    /// Creates a tenant and returns its API key.
    pub async fn new_tenant(&self, id: &str) -> String {
        let r = self.create_tenant(id, &format!("Shop {id}")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["api_key"].as_str().unwrap().to_owned()
    }

    pub async fn get_tenant(&self, id: &str, token: &str) -> Reply {
        self.request(Method::GET, &format!("/v1/tenants/{id}"), Some(token), None)
            .await
    }

    pub async fn list_tenants(&self, query: &str) -> Reply {
        self.request(
            Method::GET,
            &format!("/v1/tenants{query}"),
            Some(ADMIN),
            None,
        )
        .await
    }

    pub async fn delete_tenant(&self, id: &str, token: &str) -> Reply {
        self.request(
            Method::DELETE,
            &format!("/v1/tenants/{id}"),
            Some(token),
            None,
        )
        .await
    }

    pub async fn restore_tenant(&self, id: &str) -> Reply {
        self.request(
            Method::POST,
            &format!("/v1/tenants/{id}/restore"),
            Some(ADMIN),
            None,
        )
        .await
    }

    pub async fn rotate_key(&self, id: &str, token: &str) -> Reply {
        self.request(
            Method::POST,
            &format!("/v1/tenants/{id}/rotate-key"),
            Some(token),
            None,
        )
        .await
    }

    pub async fn settings(&self, id: &str, token: &str) -> Reply {
        self.request(
            Method::GET,
            &format!("/v1/tenants/{id}/settings"),
            Some(token),
            None,
        )
        .await
    }

    pub async fn patch_settings(&self, id: &str, token: &str, patch: Value) -> Reply {
        self.request(
            Method::PATCH,
            &format!("/v1/tenants/{id}/settings"),
            Some(token),
            Some(patch),
        )
        .await
    }

    pub async fn metrics(&self) -> String {
        self.request(Method::GET, "/metrics", None, None).await.text
    }

    /// The value of an unlabelled metric sample (`tarn_<name>` or `tarn_<name>_total`).
    pub async fn metric(&self, name: &str) -> f64 {
        metric_value(&self.metrics().await, name)
    }
}

pub fn metric_value(text: &str, name: &str) -> f64 {
    let full = format!("tarn_{name}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == full || k == format!("{full}_total")).then(|| v.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("metric {full} not in:\n{text}"))
}

pub async fn into_reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        body,
        text,
        headers,
    }
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// The path of a tenant's file, as the server lays it out.
pub fn tenant_file(data_dir: &Path, id: &str) -> PathBuf {
    tarn::tenant::Layout::new(data_dir).tenant_db(&tarn::tenant::TenantId::parse(id).unwrap())
}

impl TestApp {
    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, Some(ADMIN), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request(Method::POST, path, Some(ADMIN), Some(body))
            .await
    }

    /// `POST /v1/tenants/{t}/messages` as `sender`.
    pub async fn say(&self, t: &str, sender: &str, text: &str) -> Reply {
        self.post(
            &format!("/v1/tenants/{t}/messages"),
            json!({"text": text, "sender": sender}),
        )
        .await
    }

    /// `POST /v1/tenants/{t}/actions`.
    pub async fn act(&self, t: &str, action: Value) -> Reply {
        self.post(&format!("/v1/tenants/{t}/actions"), action).await
    }

    /// A product's field by name, from `GET /products`.
    pub async fn product(&self, t: &str, name: &str) -> Value {
        let r = self.get(&format!("/v1/tenants/{t}/products")).await;
        r.body["products"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no product {name}: {}", r.text))
    }

    /// A customer's balance by name.
    pub async fn balance(&self, t: &str, name: &str) -> Value {
        let r = self.get(&format!("/v1/tenants/{t}/customers")).await;
        r.body["customers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["balance"].clone())
            .unwrap_or_else(|| panic!("no customer {name}: {}", r.text))
    }

    /// A tenant with a small catalog, a customer and one staff member of each role.
    pub async fn shop(&self, t: &str) {
        self.shop_in(t, "UTC").await;
    }

    /// `shop` in the time zone `zone`.
    pub async fn shop_in(&self, t: &str, zone: &str) {
        let r = self
            .request(
                Method::POST,
                "/v1/tenants",
                Some(ADMIN),
                Some(json!({"id": t, "name": format!("Shop {t}"), "timezone": zone})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        for p in [
            json!({"name": "Rice", "price": 15, "unit": "bag", "stock": 20}),
            json!({"name": "Sugar", "price": 2.5, "unit": "kg", "stock": 50, "low_stock_at": 10}),
            json!({"name": "Cooking Oil", "price": 3, "unit": "bottle", "stock": 10}),
            json!({"name": "Brown Bread", "price": 1.2, "stock": 30}),
            json!({"name": "White Bread", "price": 1, "stock": 30}),
        ] {
            let r = self.post(&format!("/v1/tenants/{t}/products"), p).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        }
        let r = self
            .post(
                &format!("/v1/tenants/{t}/customers"),
                json!({"name": "Ahmed"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        for (name, role) in [
            ("Mary", "manager"),
            ("Sam", "staff"),
            ("Musa", "driver"),
            ("Vic", "vendor"),
        ] {
            let r = self
                .post(
                    &format!("/v1/tenants/{t}/staff"),
                    json!({"name": name, "role": role}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        }
    }
}

/// Decodes a weekly chart PNG: its size and the heights (pixels) of its bars, left to right.
pub fn chart_bars(png_bytes: &[u8]) -> ((u32, u32), Vec<usize>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("one frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let (w, h) = (info.width, info.height);
    let bar = |x: u32, y: u32| {
        let i = ((y * w + x) * 3) as usize;
        buf[i..i + 3] == [38, 110, 180]
    };
    let Some(base) = (0..h).rev().find(|y| (0..w).any(|x| bar(x, *y))) else {
        return ((w, h), Vec::new());
    };
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for x in 0..w {
        match (bar(x, base), runs.last_mut()) {
            (true, Some(r)) if r.1 + 1 == x => r.1 = x,
            (true, _) => runs.push((x, x)),
            _ => {}
        }
    }
    let heights = runs
        .iter()
        .map(|(a, b)| (0..=base).filter(|y| bar((a + b) / 2, *y)).count())
        .collect();
    ((w, h), heights)
}

/// Moves a tenant's sale `id` to `at` (seeding history the API cannot backdate).
pub fn backdate_sale(data_dir: &Path, t: &str, id: i64, at: &str) {
    let mut conn = rusqlite::Connection::open(tenant_file(data_dir, t)).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let tx = conn.transaction().unwrap();
    assert_eq!(tarn::shop::report::move_sale(&tx, id, at).unwrap(), 1);
    tx.commit().unwrap();
}

/// Sells through the API as Sam, then moves that sale to 09:00 UTC `days` ago.
pub async fn sale_days_ago(app: &TestApp, t: &str, text: &str, days: u64) {
    let r = app.say(t, "Sam", text).await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    let id: i64 = rusqlite::Connection::open(tenant_file(&app.data_dir(), t))
        .unwrap()
        .query_row("SELECT max(id) FROM sales", [], |r| r.get(0))
        .unwrap();
    let day = chrono::Utc::now().date_naive() - chrono::Days::new(days);
    backdate_sale(&app.data_dir(), t, id, &format!("{day}T09:00:00.000Z"));
}

/// Runs the `tarn` binary with `args` and `--data-dir data`: whether it succeeded, its
/// stdout and stderr.
pub fn tarn_cli(args: &[&str], data: &Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tarn_cli` that must succeed: its stdout.
pub fn tarn_ok(args: &[&str], data: &Path) -> String {
    let (ok, out, err) = tarn_cli(args, data);
    assert!(ok, "tarn {args:?}: {err}");
    out
}

/// A free port on 127.0.0.1 (the OS picks it; it is free again for a child to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process (a stand-in server, a proxy, a model server) killed and reaped when
/// dropped.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Held by the tests that load the whole machine (replication with its bucket stand-in,
/// the kill -9 runs, the bench harness) so they never run beside one another: on two cores
/// one of them starves another's timeouts.
pub static MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
