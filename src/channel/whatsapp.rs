//! WhatsApp Cloud API: the signed webhook (HMAC-SHA256 over the raw bytes), decoding
//! messages and statuses, and sending through the Graph API.
//! Invariants: the signature is checked on the exact bytes received, in constant time,
//! before anything is parsed; an access token is only ever sent to the Graph API.

use super::ChannelError;
use crate::mail::Provider;
use crate::mail::inbox::Inbound;
use crate::mail::outbox::SendError;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;

/// Messages per second per WhatsApp number.
pub const PER_SECOND: u32 = 80;
/// WhatsApp's longest text message.
pub const MAX_TEXT: usize = 4096;

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`.
pub fn signature_ok(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header
        .and_then(|h| h.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h.trim()).ok())
    else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// One change's worth of a webhook: which number it was for, what came in, what happened
/// to what we sent.
#[derive(Debug, Default)]
pub struct Batch {
    pub phone_number_id: String,
    pub messages: Vec<Inbound>,
    /// (wamid of our message, status, error text)
    pub statuses: Vec<(String, String, Option<String>)>,
}

/// Splits a verified webhook body into one body per business phone number (each a
/// webhook body of its own holding only that number's changes), in first-seen order.
pub fn split(body: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ChannelError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ChannelError::BadRequest(format!("not JSON: {e}")))?;
    let mut parts: Vec<(String, Vec<Value>)> = Vec::new();
    for entry in v["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            let Some(phone) = change["value"]["metadata"]["phone_number_id"].as_str() else {
                continue;
            };
            match parts.iter_mut().find(|(p, _)| p == phone) {
                Some((_, changes)) => changes.push(change.clone()),
                None => parts.push((phone.to_owned(), vec![change.clone()])),
            }
        }
    }
    Ok(parts
        .into_iter()
        .map(|(phone, changes)| {
            let part = serde_json::json!({
                "object": v["object"],
                "entry": [{"id": "split", "changes": changes}],
            });
            (
                phone,
                serde_json::to_vec(&part).expect("JSON values serialize"),
            )
        })
        .collect())
}

/// Decodes a verified webhook body into batches per phone number.
pub fn decode(body: &[u8]) -> Result<Vec<Batch>, ChannelError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ChannelError::BadRequest(format!("not JSON: {e}")))?;
    if v["object"] != "whatsapp_business_account" {
        return Err(ChannelError::BadRequest(
            "object is not whatsapp_business_account".into(),
        ));
    }
    let mut out = Vec::new();
    for entry in v["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            let value = &change["value"];
            let Some(phone) = value["metadata"]["phone_number_id"].as_str() else {
                continue;
            };
            let mut batch = Batch {
                phone_number_id: phone.to_owned(),
                ..Batch::default()
            };
            let contacts = value["contacts"].as_array().cloned().unwrap_or_default();
            for m in value["messages"].as_array().into_iter().flatten() {
                let Some(wamid) = m["id"].as_str() else {
                    continue;
                };
                let from = m["from"].as_str().unwrap_or("");
                // Identity: the wa_id, or the business-scoped user_id when wa_id is empty.
                let contact = contacts
                    .iter()
                    .find(|c| c["wa_id"].as_str() == Some(from))
                    .or(contacts.first());
                let wa_id = contact
                    .and_then(|c| c["wa_id"].as_str())
                    .filter(|s| !s.is_empty())
                    .or(Some(from).filter(|s| !s.is_empty()));
                let user_id = contact
                    .and_then(|c| c["user_id"].as_str())
                    .or(m["from_user_id"].as_str());
                let who = wa_id.or(user_id).map(str::to_owned);
                let name = contact
                    .and_then(|c| c["profile"]["name"].as_str())
                    .map(str::to_owned);
                let (text, note) = match m["type"].as_str() {
                    Some("text") => (m["text"]["body"].as_str().map(str::to_owned), None),
                    Some("interactive") => {
                        let i = &m["interactive"];
                        let title = i["button_reply"]["title"]
                            .as_str()
                            .or(i["list_reply"]["title"].as_str());
                        (title.map(str::to_owned), None)
                    }
                    Some("button") => (m["button"]["text"].as_str().map(str::to_owned), None),
                    Some("location") => (
                        None,
                        Some(format!(
                            "location {},{}",
                            m["location"]["latitude"], m["location"]["longitude"]
                        )),
                    ),
                    Some(other) => (None, Some(format!("{other} message: stored, not acted on"))),
                    None => (None, Some("message without a type".into())),
                };
                let actionable =
                    text.as_deref().is_some_and(|t| !t.trim().is_empty()) && who.is_some();
                batch.messages.push(Inbound {
                    provider: Provider::WhatsApp,
                    update_key: format!("wa:{wamid}"),
                    chat_id: who.clone(),
                    sender_id: who,
                    sender_name: name,
                    text,
                    payload: String::from_utf8_lossy(body).into_owned(),
                    actionable,
                    note,
                });
            }
            for s in value["statuses"].as_array().into_iter().flatten() {
                if let (Some(id), Some(status)) = (s["id"].as_str(), s["status"].as_str()) {
                    let err = s["errors"][0]["code"].as_i64().map(|c| {
                        format!("{c}: {}", s["errors"][0]["title"].as_str().unwrap_or(""))
                    });
                    batch.statuses.push((id.to_owned(), status.to_owned(), err));
                }
            }
            out.push(batch);
        }
    }
    Ok(out)
}

/// What went wrong reaching the Graph API, in words (never reqwest's own text).
fn reach_error(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect (is TARN_WHATSAPP_API_URL right?)"
    } else if e.is_builder() {
        "the request could not be made from these values"
    } else {
        "network error"
    }
}

/// Whether an access token has the shape Meta issues: 1-1024 visible ASCII characters.
pub fn token_shape_ok(token: &str) -> bool {
    (1..=1024).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks an access token against a phone number (GET /{phone_number_id}).
pub async fn check(
    http: &reqwest::Client,
    api: &str,
    phone_number_id: &str,
    token: &str,
) -> Result<Value, ChannelError> {
    let resp = http
        .get(format!(
            "{}/{phone_number_id}?fields=display_phone_number,verified_name",
            api.trim_end_matches('/')
        ))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| {
            ChannelError::Provider(format!("Graph API unreachable: {}", reach_error(&e)))
        })?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(ChannelError::Provider(format!(
            "Graph API refused the number or token: {}",
            body["error"]["message"].as_str().unwrap_or(status.as_str())
        )));
    }
    Ok(body)
}

/// Sends one text (or, given `template`, that approved template instead).
pub async fn send(
    http: &reqwest::Client,
    api: &str,
    phone_number_id: &str,
    token: &str,
    to: &str,
    text: &str,
    template: Option<&str>,
) -> Result<String, SendError> {
    let body = match template {
        Some(name) => json!({"messaging_product": "whatsapp", "to": to, "type": "template",
            "template": {"name": name, "language": {"code": "en"}}}),
        None => json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
            "type": "text", "text": {"preview_url": false, "body": text}}),
    };
    post_message(http, api, phone_number_id, token, &body).await
}

/// Posts one message body to `/messages`; the wamid Meta gives it.
async fn post_message(
    http: &reqwest::Client,
    api: &str,
    phone_number_id: &str,
    token: &str,
    body: &Value,
) -> Result<String, SendError> {
    let resp = http
        .post(format!(
            "{}/{phone_number_id}/messages",
            api.trim_end_matches('/')
        ))
        .bearer_auth(token)
        .json(body)
        .send()
        .await;
    let v = answer(resp).await?;
    Ok(v["messages"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Sends a PNG with a caption: uploads it (`/media`), then sends an image message.
pub async fn send_image(
    http: &reqwest::Client,
    api: &str,
    phone_number_id: &str,
    token: &str,
    to: &str,
    png: &[u8],
    caption: &str,
) -> Result<String, SendError> {
    let api = api.trim_end_matches('/');
    let file = reqwest::multipart::Part::bytes(png.to_vec())
        .file_name("report.png")
        .mime_str("image/png")
        .map_err(|e| SendError::Retry(e.to_string()))?;
    let form = reqwest::multipart::Form::new()
        .text("messaging_product", "whatsapp")
        .text("type", "image/png")
        .part("file", file);
    let resp = http
        .post(format!("{api}/{phone_number_id}/media"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await;
    let media = answer(resp).await?;
    let Some(media_id) = media["id"].as_str() else {
        return Err(SendError::Retry("the media upload answered no id".into()));
    };
    let body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
        "type": "image", "image": {"id": media_id, "caption": caption}});
    post_message(http, api, phone_number_id, token, &body).await
}

/// The body of a 2xx Graph answer, or the error it means.
async fn answer(resp: Result<reqwest::Response, reqwest::Error>) -> Result<Value, SendError> {
    let resp =
        resp.map_err(|e| SendError::Retry(format!("Graph API unreachable: {}", reach_error(&e))))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(v);
    }
    let code = v["error"]["code"].as_i64().unwrap_or(0);
    let message = v["error"]["message"].as_str().unwrap_or("").to_owned();
    match (status, code) {
        // Throughput (130429) and pair rate (131056) limits, or a plain 429.
        (429, _) | (_, 130429 | 131056) => Err(SendError::RetryAfter(Duration::from_secs(
            retry_after.unwrap_or(6),
        ))),
        // Outside the 24-hour customer service window.
        (_, 131047) => Err(SendError::OutsideWindow(format!("{code}: {message}"))),
        (401 | 403, _) | (_, 131026 | 131021 | 131030) => {
            Err(SendError::Unreachable(format!("{code}: {message}")))
        }
        _ => Err(SendError::Retry(format!(
            "HTTP {status}, {code}: {message}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_exact_bytes() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"app-secret").unwrap();
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_ok("app-secret", body, Some(&sig)));
        assert!(!signature_ok(
            "app-secret",
            br#"{"object": "whatsapp_business_account"}"#,
            Some(&sig)
        ));
        assert!(!signature_ok("other", body, Some(&sig)));
        assert!(!signature_ok("app-secret", body, None));
        assert!(!signature_ok("app-secret", body, Some("sha256=zz")));
    }
}
