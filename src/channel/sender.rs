//! The sender: for each tenant posted by the mail signal, sends its due outbox rows (the
//! oldest of each chat first, one per chat per pass, within the providers' pace) and records
//! each outcome. Invariants: one send task per tenant at a time; a part the provider took
//! is recorded before the next is sent; a row that cannot go now is looked at again later
//! (a timer posts the tenant again), never dropped.

use super::pacing::Pacing;
use super::{Account, ChannelError, Channels};
use crate::mail::Posted;
use crate::mail::Provider;
use crate::mail::outbox::{self, OutRow, SendError, split_text};
use crate::tenant::{StoreError, TenantId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Rows sent at once for one tenant.
const SEND_CONCURRENCY: usize = 16;

/// A row that is not due yet is looked at again after this long.
const RECHECK: Duration = Duration::from_secs(1);

/// What one pass over a tenant's outbox did.
struct Pass {
    /// Something was sent: there may be more due right away.
    sent_any: bool,
    /// Rows wait (not due, or paced): look again after this long.
    wait: Option<Duration>,
    /// The pending rows, read in the trip that recorded this pass (when something was sent).
    next: Option<Vec<OutRow>>,
}

/// What became of one row in a pass: its id, parts sent in all, and the last outcome.
type Sent = (OutRow, i64, Result<String, SendError>);

impl Channels {
    /// Starts a send task for each posted tenant (or tells the running one to look again).
    pub(super) async fn send_loop(self, mut posted: Posted) {
        while let Some(tenant) = posted.recv().await {
            match self.inner.sending.entry(tenant.clone()) {
                dashmap::Entry::Occupied(mut e) => {
                    *e.get_mut() = true;
                }
                dashmap::Entry::Vacant(v) => {
                    v.insert(false);
                    let me = self.clone();
                    self.inner
                        .work
                        .spawn(async move { me.send_tenant(tenant).await });
                }
            }
            posted.taken();
        }
    }

    /// Sends the tenant's due rows pass after pass until nothing more goes now.
    async fn send_tenant(&self, tenant: TenantId) {
        let mut rows = None;
        loop {
            let wait = match self.send_pass(&tenant, rows.take()).await {
                Ok(Pass {
                    sent_any: true,
                    next,
                    ..
                }) => {
                    rows = next;
                    continue;
                }
                Ok(Pass { wait, .. }) => wait,
                Err(ChannelError::Store(StoreError::NotFound(_))) => None,
                Err(e) => {
                    tracing::error!(tenant = %tenant, error = %e, "outbox send failed");
                    Some(Duration::from_secs(5))
                }
            };
            // Done unless posted again meanwhile (then the entry says so: look once more).
            let done = self
                .inner
                .sending
                .remove_if_mut(&tenant, |_, again| !std::mem::take(again))
                .is_some();
            if done {
                if let Some(wait) = wait
                    && !self.stopping()
                {
                    let (me, t) = (self.clone(), tenant.clone());
                    self.inner.timers.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        me.inner.mail.post(t);
                        me.inner.timers.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                return;
            }
        }
    }

    /// One pass over `rows` (read now when not given): sends the oldest due row of each
    /// chat that its pace allows, then records the outcomes in one transaction (and, when
    /// something went, reads the rows for the next pass in the same trip).
    async fn send_pass(
        &self,
        tenant: &TenantId,
        rows: Option<Vec<OutRow>>,
    ) -> Result<Pass, ChannelError> {
        let rows = match rows {
            Some(rows) => rows,
            None => {
                self.inner
                    .store
                    .pool()
                    .with_conn(tenant.clone(), |conn| {
                        Ok::<_, ChannelError>(outbox::pending(conn)?)
                    })
                    .await?
            }
        };
        let mut accounts: HashMap<Provider, Option<Arc<Account>>> = HashMap::new();
        let mut chats_done = std::collections::HashSet::new();
        let mut wait: Option<Duration> = None;
        let mut later = |d: Duration| wait = Some(wait.map_or(d, |w| w.min(d)));
        let mut to_send = Vec::new();
        let mut unbound = Vec::new();
        for row in rows {
            // Only a chat's oldest pending message may go (a delayed one holds the rest
            // back), and one per pass keeps the per-chat pace.
            if !chats_done.insert((row.provider, row.chat.clone())) {
                continue;
            }
            if !row.due {
                later(RECHECK);
                continue;
            }
            let gap = Pacing::gap(row.provider, &row.chat, self.inner.config.chat_gap);
            let paced = self
                .inner
                .pacing
                .wait_for_chat(tenant, row.provider, &row.chat, gap);
            if !paced.is_zero() {
                later(paced);
                continue;
            }
            let account = match accounts.get(&row.provider) {
                Some(a) => a.clone(),
                None => {
                    let a = self.account_of(tenant, row.provider).await?.map(Arc::new);
                    accounts.insert(row.provider, a.clone());
                    a
                }
            };
            let Some(account) = account else {
                unbound.push(row);
                continue;
            };
            let key = account_key(&account);
            if !self.inner.pacing.take_slot(
                row.provider,
                &key,
                account.per_second(&self.inner.config),
            ) {
                later(Duration::from_millis(100));
                continue;
            }
            to_send.push((account, row));
        }
        let mut outcomes: Vec<Sent> = unbound
            .into_iter()
            .map(|row| {
                let why = format!(
                    "no {} account is bound to this tenant any more",
                    row.provider
                );
                (row, 0, Err(SendError::Unreachable(why)))
            })
            .collect();
        let sent_any = !to_send.is_empty();
        for done in self.send_rows(tenant, to_send).await {
            match done {
                Ok(sent) => outcomes.push(sent),
                Err(e) => tracing::error!(tenant = %tenant, error = %e, "a send failed to record"),
            }
        }
        let again = |r: &Result<String, SendError>| {
            matches!(
                r,
                Err(SendError::Retry(_) | SendError::RetryAfter(_) | SendError::Moved(_))
            )
        };
        if outcomes.iter().any(|(_, _, r)| again(r)) {
            // A retry or a moved chat: the row is pending again, due later or now.
            later(RECHECK);
        }
        let next = self.record(tenant, outcomes, sent_any).await?;
        Ok(Pass {
            sent_any,
            wait,
            next,
        })
    }

    /// Sends rows side by side (at most `SEND_CONCURRENCY` at once); one row, in this task.
    async fn send_rows(
        &self,
        tenant: &TenantId,
        rows: Vec<(Arc<Account>, OutRow)>,
    ) -> Vec<Result<Sent, ChannelError>> {
        if rows.len() <= 1 {
            let mut out = Vec::new();
            for (account, row) in rows {
                out.push(self.send_row(tenant, &account, row).await);
            }
            return out;
        }
        let permits = Arc::new(tokio::sync::Semaphore::new(SEND_CONCURRENCY));
        let mut sends = tokio::task::JoinSet::new();
        for (account, row) in rows {
            let (me, t) = (self.clone(), tenant.clone());
            let permit = permits.clone().acquire_owned().await.expect("never closed");
            sends.spawn(async move {
                let _permit = permit;
                me.send_row(&t, &account, row).await
            });
        }
        let mut out = Vec::new();
        while let Some(done) = sends.join_next().await {
            out.push(done.unwrap_or_else(|e| {
                Err(ChannelError::Provider(format!("a send task failed: {e}")))
            }));
        }
        out
    }

    /// The tenant's account of `provider`, if one is bound.
    async fn account_of(
        &self,
        tenant: &TenantId,
        provider: Provider,
    ) -> Result<Option<Account>, ChannelError> {
        match self.binding(tenant, provider).await? {
            Some(b) => Ok(Some(self.account(&b)?)),
            None => Ok(None),
        }
    }

    /// Sends a row's parts not sent yet, recording each but the last (the caller records
    /// the row's outcome); stops at the first failure.
    async fn send_row(
        &self,
        tenant: &TenantId,
        account: &Account,
        row: OutRow,
    ) -> Result<Sent, ChannelError> {
        if let Some(png) = &row.image {
            let result = account.send_image(&row.chat, png, &row.text).await;
            self.inner
                .pacing
                .sent_to_chat(tenant, row.provider, &row.chat);
            let parts = i64::from(result.is_ok());
            return Ok((row, parts, result));
        }
        let parts = split_text(&row.text, account.max_text());
        let total = parts.len() as i64;
        let mut sent = row.parts_sent;
        let mut outcome = Ok(String::new());
        for part in parts.into_iter().skip(row.parts_sent as usize) {
            match account.send_text(&row.chat, &part).await {
                Ok(pid) => {
                    sent += 1;
                    if sent < total {
                        self.record_parts(tenant, row.id, sent).await?;
                    }
                    outcome = Ok(pid);
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        self.inner
            .pacing
            .sent_to_chat(tenant, row.provider, &row.chat);
        Ok((row, sent, outcome))
    }

    async fn record_parts(
        &self,
        tenant: &TenantId,
        id: i64,
        sent: i64,
    ) -> Result<(), ChannelError> {
        self.inner
            .store
            .pool()
            .with_conn(tenant.clone(), move |conn| {
                Ok::<_, ChannelError>(outbox::record_parts(conn, id, sent)?)
            })
            .await
    }

    /// Records a pass's outcomes in one transaction; with `then_read`, returns the pending
    /// rows read right after, in the same trip.
    async fn record(
        &self,
        tenant: &TenantId,
        outcomes: Vec<Sent>,
        then_read: bool,
    ) -> Result<Option<Vec<OutRow>>, ChannelError> {
        if outcomes.is_empty() && !then_read {
            return Ok(None);
        }
        self.inner
            .store
            .pool()
            .with_conn(tenant.clone(), move |conn| {
                if !outcomes.is_empty() {
                    let tx = conn.transaction()?;
                    for (row, parts, result) in outcomes {
                        outbox::record(&tx, &row, parts, result)?;
                    }
                    tx.commit()?;
                }
                let next = then_read.then(|| outbox::pending(conn)).transpose()?;
                Ok::<_, ChannelError>(next)
            })
            .await
    }
}

/// The pacing key of an account: the bot or the phone number.
fn account_key(account: &Account) -> String {
    match account {
        Account::Telegram(bot) => bot.token().split(':').next().unwrap_or("").to_owned(),
        Account::WhatsApp(wa) => wa.phone_number_id.clone(),
    }
}
