//! `tarn placement …`: the placement API of a running set of machines, called over HTTP.
//! A request for a tenant that lands on a machine that does not own it is answered with
//! `fly-replay`; without Fly's proxy in between, this client follows it itself to the
//! owner's announced URL. Invariant: it only reads the directory and asks owners to move
//! their tenants; it never writes the directory itself.

use crate::config::{PlacementCommand, Secret};
use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};

struct Api {
    via: String,
    token: Secret,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    /// One call; a `fly-replay: instance=M` answer is re-sent to M's URL once.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        self.runtime.block_on(self.send(method, path, body))
    }

    /// `call`, within the runtime (several at once).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let send = |base: String| {
            let mut req = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(self.token.expose());
            if let Some(b) = body {
                req = req.json(b);
            }
            req.send()
        };
        let mut res = send(self.via.clone())
            .await
            .with_context(|| format!("cannot reach {}", self.via))?;
        if let Some(machine) = replay_target(&res) {
            let url = self.machine_url(&machine).await?;
            res = send(url.clone())
                .await
                .with_context(|| format!("cannot reach machine {machine} at {url}"))?;
        }
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let said = value["error"]["message"]
                .as_str()
                .unwrap_or(&text)
                .to_owned();
            bail!("{path}: {status}: {said}");
        }
        Ok(value)
    }

    async fn machine_url(&self, machine: &str) -> anyhow::Result<String> {
        let res = self
            .http
            .get(format!("{}/v1/placement", self.via))
            .bearer_auth(self.token.expose())
            .send()
            .await?
            .error_for_status()?;
        let overview: Value = res.json().await?;
        overview["machines"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["machine"] == machine)
            .and_then(|m| m["url"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("machine {machine} has not announced itself"))
    }
}

fn replay_target(res: &reqwest::Response) -> Option<String> {
    let header = res.headers().get("fly-replay")?.to_str().ok()?;
    crate::placement::instance_in(header).map(|m| m.to_string())
}

/// Tenants a drain moves (or takes over) at the same time.
const DRAIN_AT_ONCE: usize = 4;

/// Moves one tenant of a live machine, or takes one of a dead machine over, to `to`;
/// says how it went.
async fn hand_one(api: &Api, machine: &str, alive: bool, id: String, to: String) -> bool {
    let done = if alive {
        api.send(
            reqwest::Method::POST,
            &format!("/v1/placement/tenants/{id}/move"),
            Some(&json!({"to": to})),
        )
        .await
    } else {
        api.send(
            reqwest::Method::POST,
            &format!("/v1/placement/machines/{to}/adopt"),
            Some(&json!({"tenant": id, "from": machine})),
        )
        .await
    };
    match done {
        Ok(r) => {
            println!("{id} -> {to} (fenced {} ms)", r["fenced_ms"]);
            true
        }
        Err(e) => {
            eprintln!("{id}: {e:#}");
            false
        }
    }
}

/// Runs one `tarn placement` subcommand.
pub fn run(via: &str, token: &Secret, command: PlacementCommand) -> anyhow::Result<()> {
    let api = Api {
        via: via.trim_end_matches('/').to_owned(),
        token: token.clone(),
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(300))
            .build()?,
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    };
    match command {
        PlacementCommand::List { limit } => {
            let machines = api.call(reqwest::Method::GET, "/v1/placement", None)?;
            let tenants = api.call(
                reqwest::Method::GET,
                &format!("/v1/placement/tenants?limit={}", limit.clamp(1, 1000)),
                None,
            )?;
            super::print_json(
                &json!({"machines": machines["machines"], "tenants": tenants["tenants"]}),
            )
        }
        PlacementCommand::Show { tenant } => super::print_json(&api.call(
            reqwest::Method::GET,
            &format!("/v1/placement/tenants/{tenant}"),
            None,
        )?),
        PlacementCommand::Move { tenant, machine } => super::print_json(&api.call(
            reqwest::Method::POST,
            &format!("/v1/placement/tenants/{tenant}/move"),
            Some(&json!({"to": machine})),
        )?),
        PlacementCommand::Drain { machine } => drain(&api, &machine),
    }
}

/// Marks the machine draining, then moves its tenants, a few at a time, each to the
/// machine with the fewest tenants at that moment. A machine that does not answer has its tenants
/// taken over from the bucket instead (each at its last sync).
fn drain(api: &Api, machine: &str) -> anyhow::Result<()> {
    api.call(
        reqwest::Method::PUT,
        &format!("/v1/placement/machines/{machine}/draining"),
        Some(&json!({"draining": true})),
    )?;
    let alive = api.call(
        reqwest::Method::GET,
        &format!("/v1/placement/machines/{machine}/alive"),
        None,
    )?["alive"]
        == true;
    if !alive {
        println!("machine {machine} does not answer: taking its tenants over from the bucket");
    }
    let overview = api.call(reqwest::Method::GET, "/v1/placement", None)?;
    let mut load: Vec<(String, u64)> = overview["machines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["machine"] != machine && m["draining"] != true)
        .filter_map(|m| Some((m["machine"].as_str()?.to_owned(), m["tenants"].as_u64()?)))
        .collect();
    if load.is_empty() {
        bail!("no other machine can take machine {machine}'s tenants");
    }
    let (mut moved, mut failed) = (0, 0);
    let mut after: Option<String> = None;
    loop {
        // A live machine lists its own tenants; a dead one's are found in the directory.
        let mut path = if alive {
            format!("/v1/placement/machines/{machine}/tenants?limit=100")
        } else {
            "/v1/placement/tenants?limit=100".to_owned()
        };
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page = api.call(reqwest::Method::GET, &path, None)?;
        let mut jobs = Vec::new();
        for t in page["tenants"].as_array().into_iter().flatten() {
            let id = match t.as_str() {
                Some(id) => id,
                None if t["owner"]["machine"] == machine => {
                    t["tenant"].as_str().unwrap_or_default()
                }
                None => continue,
            };
            load.sort_by_key(|(_, n)| *n);
            load[0].1 += 1;
            jobs.push((id.to_owned(), load[0].0.clone()));
        }
        let done = api.runtime.block_on(
            futures_util::stream::iter(jobs)
                .map(|(id, to)| hand_one(api, machine, alive, id, to))
                .buffer_unordered(DRAIN_AT_ONCE)
                .collect::<Vec<bool>>(),
        );
        moved += done.iter().filter(|ok| **ok).count();
        failed += done.iter().filter(|ok| !**ok).count();
        // A live machine's list shrinks as its tenants leave: start over until the failed
        // ones are all that is left.
        match (page["next_after"].as_str(), alive) {
            (Some(a), false) => after = Some(a.to_owned()),
            (Some(_), true) if failed == 0 => after = None,
            (Some(a), true) => after = Some(a.to_owned()),
            (None, _) => break,
        }
    }
    println!("drained machine {machine}: {moved} moved, {failed} failed");
    if failed > 0 {
        bail!("{failed} tenant(s) stayed on machine {machine}; run the drain again");
    }
    Ok(())
}
