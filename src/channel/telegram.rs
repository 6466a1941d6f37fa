//! Telegram: decoding webhook updates (teloxide's types), binding a bot (getMe, setWebhook,
//! setMyCommands) and sending (sendMessage). Invariant: a bot token is only ever sent to the
//! Bot API, never logged or returned.

use super::ChannelError;
use crate::mail::Provider;
use crate::mail::inbox::Inbound;
use crate::mail::outbox::SendError;
use teloxide::prelude::Requester;
use teloxide::types::{BotCommand, ChatId, Update, UpdateKind};

/// Telegram's longest message.
pub const MAX_TEXT: usize = 4096;

/// The HTTP client every bot shares, held by a token-less bot. A client per bot would keep
/// its own connection pool and TLS roots: with thousands of bots, hundreds of MiB and
/// thousands of sockets (each a file descriptor the tenant files need).
pub fn shared_client() -> teloxide::Bot {
    teloxide::Bot::new("")
}

/// A bot client against `api_url`, on `shared`'s HTTP client.
pub fn bot(
    shared: &teloxide::Bot,
    api_url: &str,
    token: &str,
) -> Result<teloxide::Bot, ChannelError> {
    let url = reqwest::Url::parse(api_url)
        .map_err(|e| ChannelError::Provider(format!("bad TARN_TELEGRAM_API_URL: {e}")))?;
    Ok(teloxide::Bot::with_client(token, shared.client().clone()).set_api_url(url))
}

/// Decodes a webhook body. Anything that is not a plain text message from a person is
/// stored and acknowledged but not acted on.
pub fn decode(bot_id: &str, body: &[u8]) -> Result<Inbound, ChannelError> {
    /// Just the update's id (the rest is skipped, not built): read only when teloxide's
    /// `Update` does not decode, to tell a bad body from an update of a kind we do not know.
    #[derive(serde::Deserialize)]
    struct Head {
        update_id: Option<serde_json::Value>,
    }
    let update: Result<Update, _> = serde_json::from_slice(body);
    let update_id = match &update {
        Ok(u) => i64::from(u.id.0),
        Err(_) => serde_json::from_slice::<Head>(body)
            .map_err(|e| ChannelError::BadRequest(format!("not JSON: {e}")))?
            .update_id
            .and_then(|v| v.as_i64())
            .ok_or_else(|| ChannelError::BadRequest("update_id missing".into()))?,
    };
    let mut inbound = Inbound {
        provider: Provider::Telegram,
        update_key: format!("tg:{bot_id}:{update_id}"),
        chat_id: None,
        sender_id: None,
        sender_name: None,
        text: None,
        payload: String::from_utf8_lossy(body).into_owned(),
        actionable: false,
        note: None,
    };
    let update = match update {
        Ok(u) => u,
        Err(e) => {
            inbound.note = Some(format!("undecodable update: {e}"));
            return Ok(inbound);
        }
    };
    match update.kind {
        UpdateKind::Message(m) => {
            inbound.chat_id = Some(m.chat.id.0.to_string());
            if let Some(from) = m.from.as_ref() {
                inbound.sender_id = Some(from.id.0.to_string());
                inbound.sender_name = Some(from.full_name());
            }
            if let Some(new_id) = m.migrate_to_chat_id() {
                inbound.note = Some(format!("group migrated to {}", new_id.0));
            } else if m.from.as_ref().is_some_and(|f| f.is_bot) {
                inbound.note = Some("from a bot".into());
            } else if let Some(text) = m.text() {
                inbound.text = Some(text.to_owned());
                inbound.actionable = true;
            } else {
                inbound.note = Some("no text".into());
            }
        }
        UpdateKind::EditedMessage(m) => {
            inbound.chat_id = Some(m.chat.id.0.to_string());
            inbound.note = Some("edited message: never applied twice".into());
        }
        _ => inbound.note = Some("not a message".into()),
    }
    Ok(inbound)
}

/// A Bot API error in words, without the request URL (it carries the bot token).
fn describe(e: &teloxide::RequestError) -> String {
    use teloxide::RequestError;
    match e {
        RequestError::Api(api) => format!("Telegram said: {api}"),
        RequestError::RetryAfter(s) => format!("rate limited for {}s", s.seconds()),
        RequestError::Network(n) if n.is_timeout() => "timed out".into(),
        RequestError::Network(_) => "network error reaching the Bot API".into(),
        RequestError::InvalidJson { .. } => {
            "the Bot API answered something that is not a Bot API response (is TARN_TELEGRAM_API_URL right?)".into()
        }
        RequestError::MigrateToChatId(_) => "the chat moved to a supergroup".into(),
        RequestError::Io(_) => "an I/O error talking to the Bot API".into(),
    }
}

/// Checks the shape of a bot token as @BotFather gives it (`123456789:AA…`): a bot id, a
/// colon and a secret of 30 or more letters, digits, `_` or `-`.
pub fn token_shape_ok(token: &str) -> bool {
    let Some((id, secret)) = token.split_once(':') else {
        return false;
    };
    (1..=20).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_digit())
        && (30..=100).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The bot's id and username, checking the token (getMe).
pub async fn get_me(bot: &teloxide::Bot) -> Result<(String, String), ChannelError> {
    let me = bot
        .get_me()
        .await
        .map_err(|e| ChannelError::Provider(format!("getMe failed: {}", describe(&e))))?;
    Ok((me.id.0.to_string(), me.username().to_owned()))
}

/// Points the bot's webhook at `url` with `secret` and registers the slash commands.
pub async fn set_webhook(bot: &teloxide::Bot, url: &str, secret: &str) -> Result<(), ChannelError> {
    use teloxide::payloads::SetWebhookSetters;
    use teloxide::types::AllowedUpdate;
    let url = reqwest::Url::parse(url)
        .map_err(|e| ChannelError::BadRequest(format!("TARN_PUBLIC_URL: {e}")))?;
    bot.set_webhook(url)
        .secret_token(secret.to_owned())
        .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::EditedMessage])
        .await
        .map_err(|e| ChannelError::Provider(format!("setWebhook failed: {}", describe(&e))))?;
    let commands = [
        ("sale", "record a sale: /sale 3 rice 15"),
        ("restock", "stock in: /restock sugar 20 2.5"),
        ("stock", "what is in stock"),
        ("price", "change a price: /price rice 16"),
        ("addproduct", "new product: /addproduct soap 1.20"),
        ("expense", "record an expense: /expense 20 fuel"),
        ("paid", "a customer pays: /paid ahmed 200"),
        ("balance", "what a customer owes"),
        ("order", "new order: /order fatima 2 rice"),
        ("assign", "give an order to a driver"),
        ("delivered", "an order was delivered"),
        ("cancel", "cancel an order: /cancel 17"),
        ("orders", "list orders"),
        ("report", "sales report"),
        ("undo", "undo your last action"),
        ("join", "join the shop: /join CODE"),
        ("help", "what I can do"),
    ]
    .map(|(c, d)| BotCommand::new(c, d));
    bot.set_my_commands(commands)
        .await
        .map_err(|e| ChannelError::Provider(format!("setMyCommands failed: {}", describe(&e))))?;
    Ok(())
}

/// The webhook's status as Telegram sees it (getWebhookInfo).
pub async fn webhook_info(bot: &teloxide::Bot) -> Result<serde_json::Value, ChannelError> {
    let info = bot
        .get_webhook_info()
        .await
        .map_err(|e| ChannelError::Provider(format!("getWebhookInfo failed: {}", describe(&e))))?;
    Ok(serde_json::json!({
        "url": info.url.map(|u| u.to_string()),
        "pending_update_count": info.pending_update_count,
        "last_error_date": info.last_error_date.map(crate::clock::stamp),
        "last_error_message": info.last_error_message,
    }))
}

/// Removes the webhook.
pub async fn delete_webhook(bot: &teloxide::Bot) -> Result<(), ChannelError> {
    bot.delete_webhook()
        .await
        .map(|_| ())
        .map_err(|e| ChannelError::Provider(format!("deleteWebhook failed: {}", describe(&e))))
}

/// Sends one message part.
pub async fn send(bot: &teloxide::Bot, chat_id: &str, text: &str) -> Result<String, SendError> {
    let chat = chat(chat_id)?;
    classify(
        bot.send_message(chat, text)
            .await
            .map(|m| m.id.0.to_string()),
    )
}

/// Telegram's longest photo caption.
pub const MAX_CAPTION: usize = 1024;

/// Sends a PNG as a photo with a caption (multipart upload).
pub async fn send_photo(
    bot: &teloxide::Bot,
    chat_id: &str,
    png: &[u8],
    caption: &str,
) -> Result<String, SendError> {
    use teloxide::payloads::SendPhotoSetters;
    let chat = chat(chat_id)?;
    let caption: String = caption.chars().take(MAX_CAPTION).collect();
    let photo = teloxide::types::InputFile::memory(png.to_vec()).file_name("report.png");
    classify(
        bot.send_photo(chat, photo)
            .caption(caption)
            .await
            .map(|m| m.id.0.to_string()),
    )
}

fn chat(chat_id: &str) -> Result<ChatId, SendError> {
    chat_id
        .parse()
        .map(ChatId)
        .map_err(|_| SendError::Unreachable(format!("bad chat id {chat_id}")))
}

/// What a Bot API answer to a send means for the outbox.
fn classify(sent: Result<String, teloxide::RequestError>) -> Result<String, SendError> {
    use teloxide::ApiError;
    use teloxide::RequestError;
    match sent {
        Ok(id) => Ok(id),
        Err(RequestError::RetryAfter(s)) => Err(SendError::RetryAfter(s.duration())),
        Err(RequestError::MigrateToChatId(new)) => Err(SendError::Moved(new.0.to_string())),
        Err(RequestError::Api(
            ApiError::BotBlocked
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::ChatNotFound
            | ApiError::UserDeactivated
            | ApiError::CantInitiateConversation,
        )) => Err(SendError::Unreachable("blocked or gone".into())),
        Err(e) => Err(SendError::Retry(describe(&e))),
    }
}
