//! `tarn chat <tenant> [--as <staff>]`: a terminal REPL over the same pipeline as a chat
//! app, so anyone can try a shop. Invariant: each line is one message through the executor;
//! it works beside a running server (SQLite serializes the writes).

use crate::executor::{self, Input, Request, Status};
use crate::store::Store;
use crate::tenant::TenantId;
use std::io::{BufRead, Write};

/// Reads lines from `input`, runs each as `sender` (absent: the shop's owner), writes
/// replies to `out`, until EOF or `/quit`. A sender who is not an active staff member fails
/// before anything is read.
pub fn repl(
    store: &Store,
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
    prompt(&mut out)?;
    for line in input.lines() {
        let line = line?;
        let text = line.trim();
        if text == "/quit" || text == "/exit" {
            break;
        }
        if !text.is_empty() {
            let req = Request {
                inbound_id: None,
                channel: "cli".into(),
                sender: Some(sender.to_owned()),
                ceiling: None,
                input: Input::Text(text.to_owned()),
                parse_us: None,
                reply_to: None,
            };
            let mut conn = handle.conn()?;
            match executor::execute(&mut conn, &req) {
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
