//! Pacing of sends: the least gap between two messages to one chat, and each account's
//! messages per second. Invariant: in memory only, forgotten after a minute unused (a
//! restart forgets it too, which at worst sends one message early).

use crate::mail::Provider;
use crate::tenant::TenantId;
use dashmap::DashMap;
use std::time::{Duration, Instant};

/// Least gap between messages to one Telegram group (about 20 a minute).
const GROUP_GAP: Duration = Duration::from_secs(3);

/// When each chat last got a message and how many each account sent this second.
#[derive(Default)]
pub struct Pacing {
    last_sent: DashMap<(TenantId, Provider, String), Instant>,
    windows: DashMap<(Provider, String), (Instant, u32)>,
}

impl Pacing {
    /// The least gap before the next message to `chat`: Telegram groups take about 20 a
    /// minute, private chats about one a second (`base`, the configured gap).
    pub fn gap(provider: Provider, chat: &str, base: Duration) -> Duration {
        if provider == Provider::Telegram && chat.starts_with('-') {
            base.max(GROUP_GAP)
        } else {
            base
        }
    }

    /// How long until `chat` may get its next message (zero: now).
    pub fn wait_for_chat(
        &self,
        tenant: &TenantId,
        provider: Provider,
        chat: &str,
        gap: Duration,
    ) -> Duration {
        if gap.is_zero() {
            return Duration::ZERO;
        }
        self.last_sent
            .get(&(tenant.clone(), provider, chat.to_owned()))
            .map_or(Duration::ZERO, |t| gap.saturating_sub(t.elapsed()))
    }

    /// Notes that `chat` just got a message.
    pub fn sent_to_chat(&self, tenant: &TenantId, provider: Provider, chat: &str) {
        self.last_sent
            .insert((tenant.clone(), provider, chat.to_owned()), Instant::now());
    }

    /// Takes one send from an account's per-second budget (0: unlimited); false when it is
    /// used up.
    pub fn take_slot(&self, provider: Provider, account: &str, per_second: u32) -> bool {
        if per_second == 0 {
            return true;
        }
        let mut w = self
            .windows
            .entry((provider, account.to_owned()))
            .or_insert((Instant::now(), 0));
        if w.0.elapsed() >= Duration::from_secs(1) {
            *w = (Instant::now(), 0);
        }
        if w.1 >= per_second {
            return false;
        }
        w.1 += 1;
        true
    }

    /// Forgets what no longer paces anything.
    pub fn forget_old(&self) {
        let minute = Duration::from_secs(60);
        self.last_sent.retain(|_, t| t.elapsed() < minute);
        self.windows.retain(|_, w| w.0.elapsed() < minute);
    }
}
