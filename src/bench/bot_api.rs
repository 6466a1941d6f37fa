//! A local stand-in for the Telegram Bot API, in its wire format (`/bot<token>/<method>`,
//! JSON or multipart bodies, `{"ok": true, "result": …}` answers), shared by `tarn bench`,
//! the integration tests and the cargo benches (a module of each, never of the library).
//! Invariant: it keeps what it was sent, answers from the queued error script first, times
//! each reply against the update that asked for it, and never reaches the real Telegram.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::oneshot;

/// A message the stand-in took: bot id, chat, text, when.
#[derive(Debug, Clone)]
pub struct Sent {
    pub bot: u64,
    pub chat: i64,
    pub text: String,
    pub at: Instant,
}

/// A photo the stand-in took: chat, caption, the file's bytes.
pub type Photo = (i64, String, Vec<u8>);

/// Updates waiting for their reply, per (bot, chat): when each was posted, whom to tell.
type Waiting = DashMap<(u64, i64), VecDeque<(Instant, oneshot::Sender<()>)>>;

#[derive(Default)]
struct Inner {
    /// Every call but sendMessage (kept in `sent`): method (lower case) and body.
    calls: Mutex<Vec<(String, Value)>>,
    secrets: DashMap<u64, String>,
    sent: Mutex<Vec<Sent>>,
    script: Mutex<VecDeque<(u16, Value)>>,
    photos: Mutex<Vec<Photo>>,
    refused: Mutex<Vec<(i64, Instant)>>,
    waiting: Waiting,
    e2e_us: Mutex<Vec<u64>>,
    replies: AtomicU64,
    unexpected: AtomicU64,
    last_reply: Mutex<Option<Instant>>,
}

/// The stand-in: its base URL (`TARN_TELEGRAM_API_URL`) and what it saw. Cheap to clone.
#[derive(Clone)]
pub struct BotApi {
    pub base: String,
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BotApi {
    /// Serves on a free loopback port until the runtime ends.
    pub async fn start() -> std::io::Result<BotApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api = BotApi {
            base: format!("http://{}", listener.local_addr()?),
            inner: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/{bot}/{method}", axum::routing::post(method))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(api)
    }

    /// The texts sent to `chat`, oldest first.
    pub fn sent_to(&self, chat: i64) -> Vec<String> {
        lock(&self.inner.sent)
            .iter()
            .filter(|s| s.chat == chat)
            .map(|s| s.text.clone())
            .collect()
    }

    /// Every message sent, oldest first.
    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.inner.sent).clone()
    }

    /// The body of the latest call of `method` (lower case: `setwebhook`).
    pub fn call(&self, method: &str) -> Option<Value> {
        lock(&self.inner.calls)
            .iter()
            .rev()
            .find(|(m, _)| m == method)
            .map(|(_, v)| v.clone())
    }

    /// The webhook secret a bot was given (setWebhook's `secret_token`).
    pub fn secret(&self, bot: u64) -> Option<String> {
        self.inner.secrets.get(&bot).map(|s| s.clone())
    }

    /// Bots that were given a webhook secret.
    pub fn bots_with_secrets(&self) -> usize {
        self.inner.secrets.len()
    }

    /// Answers the next send (a message or a photo) with this HTTP status and body.
    pub fn script(&self, status: u16, body: Value) {
        lock(&self.inner.script).push_back((status, body));
    }

    /// Sends answered from the script: chat and when.
    pub fn refused(&self) -> Vec<(i64, Instant)> {
        lock(&self.inner.refused).clone()
    }

    /// Photos sent, oldest first.
    pub fn photos(&self) -> Vec<Photo> {
        lock(&self.inner.photos).clone()
    }

    /// Waits for the next reply of `bot` to `chat`: the receiver resolves when it comes,
    /// and its time from now is kept (`take_e2e_us`).
    pub fn expect_reply(&self, bot: u64, chat: i64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .waiting
            .entry((bot, chat))
            .or_default()
            .push_back((Instant::now(), tx));
        rx
    }

    /// Forgets the latest `expect_reply` of `bot` to `chat` (its update was refused).
    pub fn forget_expected(&self, bot: u64, chat: i64) {
        if let Some(mut q) = self.inner.waiting.get_mut(&(bot, chat)) {
            q.pop_back();
        }
    }

    /// Replies that answered an expected one, replies nobody expected, and when the last
    /// came.
    pub fn reply_counts(&self) -> (u64, u64, Option<Instant>) {
        (
            self.inner.replies.load(Ordering::Relaxed),
            self.inner.unexpected.load(Ordering::Relaxed),
            *lock(&self.inner.last_reply),
        )
    }

    /// The times from `expect_reply` to the reply, in µs (taken: the list empties).
    pub fn take_e2e_us(&self) -> Vec<u64> {
        std::mem::take(&mut *lock(&self.inner.e2e_us))
    }

    /// Notes a reply: to an expected one (timed), or unexpected.
    fn replied(&self, bot: u64, chat: i64) {
        let asked = self
            .inner
            .waiting
            .get_mut(&(bot, chat))
            .and_then(|mut q| q.pop_front());
        match asked {
            Some((at, done)) => {
                lock(&self.inner.e2e_us).push(at.elapsed().as_micros() as u64);
                let _ = done.send(());
                self.inner.replies.fetch_add(1, Ordering::Relaxed);
                *lock(&self.inner.last_reply) = Some(Instant::now());
            }
            None => {
                self.inner.unexpected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

/// One Bot API call.
async fn method(
    State(api): State<BotApi>,
    Path((bot, method)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let id: u64 = bot
        .strip_prefix("bot")
        .and_then(|t| t.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // Bot API method names are case-insensitive (teloxide sends "GetMe").
    let method = method.to_lowercase();
    let parts = multipart_parts(&headers, &body);
    let fields: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => Value::Object(
            parts
                .iter()
                .map(|(k, v)| {
                    let text = String::from_utf8_lossy(v).into_owned();
                    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    (k.clone(), value)
                })
                .collect(),
        ),
    };
    if method != "sendmessage" {
        lock(&api.inner.calls).push((method.clone(), fields.clone()));
    }
    let chat = fields["chat_id"]
        .as_i64()
        .or_else(|| fields["chat_id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    if matches!(method.as_str(), "sendmessage" | "sendphoto")
        && let Some((status, err)) = lock(&api.inner.script).pop_front()
    {
        lock(&api.inner.refused).push((chat, Instant::now()));
        let status = axum::http::StatusCode::from_u16(status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        return (status, axum::Json(err)).into_response();
    }
    match method.as_str() {
        "getme" => ok(
            json!({"id": id, "is_bot": true, "first_name": "Shop", "username": "tarn_bot",
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false}),
        ),
        "setwebhook" => {
            if let Some(secret) = fields["secret_token"].as_str() {
                api.inner.secrets.insert(id, secret.to_owned());
            }
            ok(json!(true))
        }
        "setmycommands" | "deletewebhook" => ok(json!(true)),
        "getwebhookinfo" => ok(
            json!({"url": "https://tarn.example/webhooks/telegram/s", "has_custom_certificate": false,
            "pending_update_count": 3, "last_error_date": 1763800000, "last_error_message": "Connection refused"}),
        ),
        "sendmessage" => {
            let text = fields["text"].as_str().unwrap_or_default().to_owned();
            let n = {
                let mut sent = lock(&api.inner.sent);
                sent.push(Sent {
                    bot: id,
                    chat,
                    text: text.clone(),
                    at: Instant::now(),
                });
                sent.len()
            };
            api.replied(id, chat);
            ok(json!({"message_id": n, "date": 1763800000,
                "chat": {"id": chat, "type": "private", "first_name": "X"}, "text": text}))
        }
        "sendphoto" => {
            let field = |n: &str| {
                parts
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let caption = String::from_utf8_lossy(&field("caption"))
                .trim_matches('"')
                .to_owned();
            // The Bot API's `attach://<name>`: the file is the part of that name.
            let photo = field("photo");
            let photo = match std::str::from_utf8(&photo)
                .ok()
                .and_then(|p| p.strip_prefix("attach://"))
            {
                Some(name) => field(name),
                None => photo,
            };
            let n = {
                let mut photos = lock(&api.inner.photos);
                photos.push((chat, caption, photo));
                photos.len()
            };
            ok(json!({"message_id": 9000 + n, "date": 1763800000,
                "chat": {"id": chat, "type": "private", "first_name": "X"},
                "photo": [{"file_id": "AgAD", "file_unique_id": "AQAD", "width": 800, "height": 450}]}))
        }
        other => (
            axum::http::StatusCode::NOT_FOUND,
            format!("no method {other}"),
        )
            .into_response(),
    }
}

/// The parts of a multipart/form-data body by field name, as raw bytes.
pub fn multipart_parts(headers: &axum::http::HeaderMap, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(boundary) = ct.split("boundary=").nth(1) else {
        return Vec::new();
    };
    let delim = format!("--{}", boundary.trim_matches('"')).into_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = find(body, &delim, at) {
        let part_start = start + delim.len();
        let Some(end) = find(body, &delim, part_start) else {
            break;
        };
        let part = &body[part_start..end];
        if let Some(h) = find(part, b"\r\n\r\n", 0) {
            let head = String::from_utf8_lossy(&part[..h]);
            if let Some(n) = head
                .split("name=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            {
                let data = part[h + 4..]
                    .strip_suffix(b"\r\n")
                    .unwrap_or(&part[h + 4..]);
                out.push((n.to_owned(), data.to_vec()));
            }
        }
        at = end;
    }
    out
}
