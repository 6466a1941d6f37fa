//! One typed interface over the chat apps: a bound account that sends text and images,
//! with its provider's limits. Invariant: provider differences live here and in the
//! provider files (`telegram`, `whatsapp`); the worker and the sender never look at a name.

use super::{ChannelConfig, telegram, whatsapp};
use crate::mail::Provider;
use crate::mail::outbox::SendError;

/// A WhatsApp number with what sending from it needs.
pub struct WhatsAppAccount {
    pub http: reqwest::Client,
    pub api: String,
    pub phone_number_id: String,
    pub token: String,
    /// Approved template for messages outside the 24-hour window.
    pub template: Option<String>,
}

/// A bound account of one provider, ready to send.
pub enum Account {
    Telegram(teloxide::Bot),
    WhatsApp(WhatsAppAccount),
}

impl Account {
    /// Which provider it is.
    pub fn provider(&self) -> Provider {
        match self {
            Account::Telegram(_) => Provider::Telegram,
            Account::WhatsApp(_) => Provider::WhatsApp,
        }
    }

    /// The longest text one message may carry.
    pub fn max_text(&self) -> usize {
        match self {
            Account::Telegram(_) => telegram::MAX_TEXT,
            Account::WhatsApp(_) => whatsapp::MAX_TEXT,
        }
    }

    /// Most messages a second the provider takes from one account (0: no limit).
    pub fn per_second(&self, config: &ChannelConfig) -> u32 {
        match self {
            Account::Telegram(_) => config.telegram_per_second,
            Account::WhatsApp(_) => whatsapp::PER_SECOND,
        }
    }

    /// Sends one text part; the provider's message id.
    pub async fn send_text(&self, chat: &str, text: &str) -> Result<String, SendError> {
        match self {
            Account::Telegram(bot) => telegram::send(bot, chat, text).await,
            Account::WhatsApp(wa) => wa.send_text(chat, text).await,
        }
    }

    /// Sends a PNG with a caption.
    pub async fn send_image(
        &self,
        chat: &str,
        png: &[u8],
        caption: &str,
    ) -> Result<String, SendError> {
        match self {
            Account::Telegram(bot) => telegram::send_photo(bot, chat, png, caption).await,
            Account::WhatsApp(wa) => {
                let sent = whatsapp::send_image(
                    &wa.http,
                    &wa.api,
                    &wa.phone_number_id,
                    &wa.token,
                    chat,
                    png,
                    caption,
                )
                .await;
                match (sent, &wa.template) {
                    // Outside the window an image cannot go; the template can.
                    (Err(SendError::OutsideWindow(_)), Some(template)) => {
                        let (http, api, id, token) =
                            (&wa.http, &wa.api, &wa.phone_number_id, &wa.token);
                        whatsapp::send(http, api, id, token, chat, caption, Some(template)).await
                    }
                    (r, _) => r,
                }
            }
        }
    }
}

impl WhatsAppAccount {
    /// One text; outside the 24-hour window, the configured template instead.
    async fn send_text(&self, chat: &str, text: &str) -> Result<String, SendError> {
        let (http, api, id, token) = (&self.http, &self.api, &self.phone_number_id, &self.token);
        match (
            whatsapp::send(http, api, id, token, chat, text, None).await,
            &self.template,
        ) {
            (Err(SendError::OutsideWindow(_)), Some(template)) => {
                whatsapp::send(http, api, id, token, chat, text, Some(template)).await
            }
            (r, _) => r,
        }
    }
}
