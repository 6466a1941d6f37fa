//! `tarn chat <tenant> [--as <staff>]`: a terminal REPL over the same pipeline as a chat
//! app (`message::handle`: the built-in parser, the LLM when configured and unsure, the
//! executor), so anyone can try a shop. Invariant: each line is one message with its own
//! id (`cli:<session>:<n>`), so a line is never applied twice; it works beside a running
//! server (SQLite serializes the writes).

use crate::executor::{self, Input, Origin, Request, Status};
use crate::llm::LlmClient;
use crate::store::Store;
use crate::tenant::TenantId;
use std::io::{BufRead, Write};

/// Reads lines from `input`, runs each as `sender` (absent: the shop's owner), writes
/// replies to `out`, until EOF or `/quit`. A sender who is not an active staff member fails
/// before anything is read.
pub fn repl(
    store: &Store,
    llm: Option<&LlmClient>,
    tenant: &TenantId,
    sender: Option<&str>,
    input: impl BufRead,
    mut out: impl Write,
    interactive: bool,
) -> anyhow::Result<()> {
    store.get_tenant(tenant)?;
    let handle = store.pool().acquire(tenant)?;
    let staff = executor::sender_staff(&*handle.conn()?, sender, None)?;
    let sender = staff.name.as_str();
    if interactive {
        writeln!(
            out,
            "tarn chat with {tenant} as {sender}. Try /help; /quit to leave."
        )?;
    }
    let prompt = |out: &mut dyn Write| -> std::io::Result<()> {
        if interactive {
            write!(out, "{sender}> ")?;
            out.flush()?;
        }
        Ok(())
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let session = format!("{:x}", chrono::Utc::now().timestamp_millis());
    prompt(&mut out)?;
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        let text = line.trim();
        if text == "/quit" || text == "/exit" {
            break;
        }
        if !text.is_empty() {
            let req = Request {
                inbound_id: Some(format!("cli:{session}:{n}")),
                channel: Origin::Cli,
                sender: Some(sender.to_owned()),
                ceiling: None,
                input: Input::Text(text.to_owned()),
                parse_us: None,
                reply_to: None,
            };
            match runtime.block_on(crate::message::handle(store, llm, tenant, req)) {
                Ok(o) => {
                    let mark = match o.status {
                        Status::Applied | Status::Duplicate => "",
                        Status::Clarify => "? ",
                        Status::Rejected => "! ",
                    };
                    writeln!(out, "{mark}{}", o.reply)?;
                }
                Err(e) => writeln!(out, "! {e}")?,
            }
        }
        prompt(&mut out)?;
    }
    Ok(())
}
