//! Channel routes: binding a Telegram bot or a WhatsApp number to a tenant, and both
//! webhooks. Invariants: a webhook checks its secret (Telegram's token, WhatsApp's
//! signature) in constant time and stores the update before answering 200; tokens are never
//! echoed back; a steady-state webhook finds its binding in the control handle's cache.

use super::AppState;
use super::auth::TenantAccess;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::channel::{ChannelError, telegram, whatsapp};
use crate::control::Binding;
use crate::mail::Provider;
use crate::store::random_secret;
use crate::tenant::{TenantId, pool::blocking};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

impl From<ChannelError> for ApiError {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::BadRequest(m) => ApiError::bad_request(m),
            ChannelError::Unauthorized => ApiError::unauthorized("wrong or missing webhook secret"),
            e @ ChannelError::NotBound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            ChannelError::Provider(m) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", m)
            }
            ChannelError::Store(e) => e.into(),
            ChannelError::Exec(e) => e.into(),
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelegramBody {
    /// The token @BotFather gave: `123456789:AA…`.
    #[schemars(regex(pattern = r"^[0-9]{1,20}:[A-Za-z0-9_-]{30,100}$"))]
    bot_token: String,
}

/// `PUT /v1/tenants/{t}/channels/telegram` `{"bot_token"}`: checks the token (getMe), stores
/// it, and points the bot's webhook here with a fresh secret.
pub async fn put_telegram(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<TelegramBody>,
) -> Result<Json<Value>, ApiError> {
    access.require_owner()?;
    let public = state.config.public_url.clone().ok_or_else(|| {
        ApiError::bad_request("set TARN_PUBLIC_URL to this server's public https URL first")
    })?;
    let token = body.bot_token.trim().to_owned();
    if !telegram::token_shape_ok(&token) {
        return Err(ApiError::bad_request(
            "bot_token does not look like a Telegram bot token (123456789:AA… as @BotFather gives it)",
        ));
    }
    let store = state.store.clone();
    let t = access.id.clone();
    blocking(move || store.get_tenant(&t)).await?;
    let bot = state.channels.new_bot(&token)?;
    let (bot_id, username) = telegram::get_me(&bot).await?;
    let secret = random_secret("");
    let url = format!(
        "{}/webhooks/telegram/{}",
        public.trim_end_matches('/'),
        access.id
    );
    let binding = Binding {
        tenant: access.id.clone(),
        channel: Provider::Telegram.as_str().into(),
        key: bot_id.clone(),
        token,
        secret: Some(secret.clone()),
        username: Some(username.clone()),
        created_at: crate::clock::now(),
    };
    let control = state.store.control().clone();
    blocking(move || control.put_binding(&binding)).await?;
    if let Err(e) = telegram::set_webhook(&bot, &url, &secret).await {
        let control = state.store.control().clone();
        let t = access.id.clone();
        let _ = blocking(move || control.delete_binding(&t, Provider::Telegram.as_str())).await;
        return Err(e.into());
    }
    tracing::info!(tenant = %access.id, bot = %username, "telegram bot bound");
    Ok(Json(
        json!({"channel": "telegram", "bot_id": bot_id, "username": username, "webhook_url": url}),
    ))
}

async fn telegram_binding(state: &AppState, tenant: &TenantId) -> Result<Binding, ApiError> {
    let control = state.store.control().clone();
    let t = tenant.clone();
    blocking(move || control.binding(&t, Provider::Telegram.as_str()))
        .await?
        .ok_or_else(|| ChannelError::NotBound(Provider::Telegram).into())
}

/// `GET /v1/tenants/{t}/channels/telegram`: the binding and Telegram's view of the webhook.
pub async fn get_telegram(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<Value>, ApiError> {
    let b = telegram_binding(&state, &access.id).await?;
    let bot = state.channels.bot(&b.token)?;
    let webhook = telegram::webhook_info(&bot).await?;
    Ok(Json(json!({
        "channel": "telegram", "bot_id": b.key, "username": b.username,
        "bound_at": b.created_at, "webhook": webhook,
    })))
}

/// `GET /v1/tenants/{t}/channels`: both bindings at once (what is bound, not the
/// providers' live view; `null` for a channel not bound).
pub async fn get_channels(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<Value>, ApiError> {
    let control = state.store.control().clone();
    let t = access.id.clone();
    let (tg, wa) = blocking(move || {
        control.get_active(&t)?;
        Ok::<_, crate::tenant::StoreError>((
            control.binding(&t, Provider::Telegram.as_str())?,
            control.binding(&t, Provider::WhatsApp.as_str())?,
        ))
    })
    .await?;
    let public = state
        .config
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned());
    Ok(Json(json!({
        "telegram": tg.map(|b| json!({
            "bot_id": b.key, "username": b.username, "bound_at": b.created_at,
            "webhook_url": public.as_ref().map(|u| format!("{u}/webhooks/telegram/{}", access.id)),
        })),
        "whatsapp": wa.map(|b| json!({
            "phone_number_id": b.key, "display_phone_number": b.username, "bound_at": b.created_at,
            "webhook_url": public.as_ref().map(|u| format!("{u}/webhooks/whatsapp")),
        })),
    })))
}

/// `DELETE /v1/tenants/{t}/channels/telegram`: removes the webhook and the binding.
pub async fn delete_telegram(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<StatusCode, ApiError> {
    access.require_owner()?;
    let b = telegram_binding(&state, &access.id).await?;
    if let Ok(bot) = state.channels.bot(&b.token)
        && let Err(e) = telegram::delete_webhook(&bot).await
    {
        tracing::warn!(tenant = %access.id, error = %e, "deleteWebhook failed; unbinding anyway");
    }
    let control = state.store.control().clone();
    let t = access.id.clone();
    blocking(move || control.delete_binding(&t, Provider::Telegram.as_str())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /webhooks/telegram/{tenant}`: Telegram's update delivery.
pub async fn telegram_webhook(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let tenant = TenantId::parse(&raw)?;
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let binding = state.channels.binding(&tenant, Provider::Telegram).await?;
    let Some(binding) = binding else {
        return Err(ApiError::unauthorized("wrong or missing webhook secret"));
    };
    let expected = binding.secret.unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(&given)) {
        return Err(ChannelError::Unauthorized.into());
    }
    let inbound = telegram::decode(&binding.key, &body)?;
    state.channels.accept(&tenant, inbound).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppBody {
    /// The number's id as Meta shows it (digits).
    #[schemars(regex(pattern = r"^[0-9]{1,32}$"))]
    phone_number_id: String,
    /// A permanent access token of a system user with whatsapp_business_messaging.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^[!-~]+$"))]
    access_token: String,
}

/// `PUT /v1/tenants/{t}/channels/whatsapp` `{"phone_number_id","access_token"}`: checks the
/// pair against the Graph API and routes that number's messages to this tenant.
pub async fn put_whatsapp(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<WhatsAppBody>,
) -> Result<Json<Value>, ApiError> {
    access.require_owner()?;
    let phone = body.phone_number_id.trim().to_owned();
    if phone.is_empty() || phone.len() > 32 || !phone.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(
            "phone_number_id must be the digits Meta shows for the number",
        ));
    }
    let token = body.access_token.trim().to_owned();
    if !whatsapp::token_shape_ok(&token) {
        return Err(ApiError::bad_request(
            "access_token must be 1-1024 visible characters, as Meta issues it",
        ));
    }
    let config = &state.config;
    if config.whatsapp_app_secret.is_none() || config.public_url.is_none() {
        return Err(ApiError::bad_request(
            "set TARN_WHATSAPP_APP_SECRET and TARN_PUBLIC_URL on the server first: without them no WhatsApp delivery can be verified or received",
        ));
    }
    let store = state.store.clone();
    let t = access.id.clone();
    blocking(move || store.get_tenant(&t)).await?;
    let info = whatsapp::check(
        state.channels.http(),
        &state.channels.config().whatsapp_api,
        &phone,
        &token,
    )
    .await?;
    let binding = Binding {
        tenant: access.id.clone(),
        channel: Provider::WhatsApp.as_str().into(),
        key: phone.clone(),
        token,
        secret: None,
        username: info["display_phone_number"].as_str().map(str::to_owned),
        created_at: crate::clock::now(),
    };
    if let Some(p) = &state.placement {
        p.bind_number(&phone, &access.id).await?;
    }
    let control = state.store.control().clone();
    blocking(move || control.put_binding(&binding)).await?;
    tracing::info!(tenant = %access.id, phone_number_id = %phone, "whatsapp number bound");
    Ok(Json(json!({
        "channel": "whatsapp", "phone_number_id": phone,
        "display_phone_number": info["display_phone_number"], "verified_name": info["verified_name"],
        "webhook_url": state.config.public_url.as_deref().map(|u| format!("{}/webhooks/whatsapp", u.trim_end_matches('/'))),
    })))
}

/// `GET /v1/tenants/{t}/channels/whatsapp`.
pub async fn get_whatsapp(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<Value>, ApiError> {
    let control = state.store.control().clone();
    let t = access.id.clone();
    let b = blocking(move || control.binding(&t, Provider::WhatsApp.as_str()))
        .await?
        .ok_or(ChannelError::NotBound(Provider::WhatsApp))?;
    Ok(Json(
        json!({"channel": "whatsapp", "phone_number_id": b.key,
        "display_phone_number": b.username, "bound_at": b.created_at}),
    ))
}

/// `DELETE /v1/tenants/{t}/channels/whatsapp`.
pub async fn delete_whatsapp(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<StatusCode, ApiError> {
    access.require_owner()?;
    let control = state.store.control().clone();
    let t = access.id.clone();
    let bound = blocking(move || {
        let b = control.binding(&t, Provider::WhatsApp.as_str())?;
        control.delete_binding(&t, Provider::WhatsApp.as_str())?;
        Ok::<_, crate::tenant::StoreError>(b)
    })
    .await?;
    let Some(bound) = bound else {
        return Err(ChannelError::NotBound(Provider::WhatsApp).into());
    };
    if let Some(p) = &state.placement {
        p.unbind_number(&bound.key, &access.id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET /webhooks/whatsapp`: Meta's verification handshake.
pub async fn whatsapp_verify(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<Handshake>,
) -> Result<String, ApiError> {
    let expected = state
        .config
        .whatsapp_verify_token
        .as_ref()
        .map(|s| s.expose().as_bytes().to_vec());
    let given = q.verify_token.unwrap_or_default();
    match (q.mode.as_deref(), expected, q.challenge) {
        (Some("subscribe"), Some(e), Some(challenge))
            if !e.is_empty() && bool::from(e.ct_eq(given.as_bytes())) =>
        {
            Ok(challenge)
        }
        _ => Err(ApiError::forbidden("verification failed")),
    }
}

/// `POST /webhooks/whatsapp`: Meta's deliveries for every bound number.
pub async fn whatsapp_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(secret) = state.config.whatsapp_app_secret.as_ref() else {
        tracing::warn!("a WhatsApp webhook arrived but TARN_WHATSAPP_APP_SECRET is not set");
        return Err(ChannelError::Unauthorized.into());
    };
    let sig = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !whatsapp::signature_ok(secret.expose(), &body, sig) {
        return Err(ApiError::unauthorized("bad or missing X-Hub-Signature-256"));
    }
    if let Some(p) = &state.placement {
        return whatsapp_across(&state, p, &headers, &body).await;
    }
    accept_whatsapp(&state, &body, false).await?;
    Ok(Json(json!({})).into_response())
}

/// A verified WhatsApp delivery when several machines serve: each number's part goes to
/// the machine owning its tenant. All of it elsewhere, on one machine: the body is replayed
/// there byte for byte (that machine checks the signature again). Otherwise the parts are
/// forwarded over the private network, and the delivery is acknowledged only when every
/// owner has stored its part (else 503: Meta sends it again, and owners drop repeated
/// message ids).
pub async fn whatsapp_across(
    state: &AppState,
    p: &crate::placement::Placement,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let mut local = Vec::new();
    let mut remote: Vec<(crate::placement::Owner, Vec<u8>)> = Vec::new();
    for (number, part) in crate::channel::whatsapp::split(body)? {
        if state.channels.binding_of_number(&number).await?.is_some() {
            local.push(part);
            continue;
        }
        match p.owner_of_number(&number).await? {
            Some(o) if o.machine != *p.me() => remote.push((o, part)),
            _ => local.push(part),
        }
    }
    if local.is_empty()
        && !remote.is_empty()
        && remote.iter().all(|(o, _)| o.machine == remote[0].0.machine)
        && !super::placement::replayed(headers)
    {
        return Ok(super::placement::replay_to(
            &remote[0].0.machine,
            remote[0].0.epoch,
        ));
    }
    let mut failed = None;
    for (owner, part) in remote {
        if let Err(e) = p.forward_whatsapp(&owner.machine, part).await {
            tracing::warn!(machine = %owner.machine, error = %e, "placement: a WhatsApp part was not stored by its owner; Meta will send the delivery again");
            failed = Some(e);
        }
    }
    for part in local {
        accept_whatsapp(state, &part, false).await?;
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(Json(json!({})).into_response()),
    }
}

/// One number's part of a WhatsApp delivery, forwarded by the machine that received it.
pub async fn whatsapp_part(
    State(state): State<AppState>,
    _: super::auth::Operator,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    super::placement::on(&state)?;
    accept_whatsapp(&state, &body, true).await?;
    Ok(Json(json!({})))
}

/// Stores a verified WhatsApp body's messages and statuses for the tenants bound here. A
/// number bound to no tenant here is dropped with a warning, or, when `strict` (a part
/// forwarded by another machine), refused with a retryable error.
pub async fn accept_whatsapp(state: &AppState, body: &[u8], strict: bool) -> Result<(), ApiError> {
    for batch in whatsapp::decode(body)? {
        let binding = state
            .channels
            .binding_of_number(&batch.phone_number_id)
            .await?;
        let Some(binding) = binding else {
            if strict {
                return Err(ApiError::retry_soon(
                    "not_here",
                    format!(
                        "WhatsApp number {} is bound to no tenant on this machine",
                        batch.phone_number_id
                    ),
                ));
            }
            tracing::warn!(phone_number_id = %batch.phone_number_id, "WhatsApp delivery for a number bound to no tenant; dropped");
            continue;
        };
        for inbound in batch.messages {
            state.channels.accept(&binding.tenant, inbound).await?;
        }
        if !batch.statuses.is_empty() {
            state
                .channels
                .record_statuses(&binding.tenant, batch.statuses)
                .await?;
        }
    }
    Ok(())
}
