use clap::Parser;
use rusqlite::ffi;
use std::ffi::CStr;
use tarn::executor::{Input, Origin, Request};

#[derive(Parser)]
struct W {
    #[command(flatten)]
    a: tarn::config::StoreArgs,
}

fn main() {
    tarn::tenant::sqlite::configure_process();
    let w = W::parse();
    let store = tarn::app::open_store(&w.a, Default::default()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let msgs: usize = std::env::var("M")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let text = std::env::var("TEXT").unwrap_or("/sale 1 rice".into());
    let sender = std::env::var("SENDER").unwrap_or("owner".into());
    let id = tarn::tenant::TenantId::parse(&std::env::var("T").unwrap_or("bench-000005".into()))
        .unwrap();
    for m in 0..msgs {
        let req = Request {
            inbound_id: Some(format!("st:{m}:{}", std::process::id())),
            channel: Origin::Http,
            sender: Some(sender.clone()),
            ceiling: None,
            input: Input::Text(text.clone()),
            parse_us: None,
            reply_to: None,
        };
        let o = rt.block_on(tarn::message::handle(&store, None, &id, req));
        if m == 0 {
            println!("{:?}", o.map(|o| o.reply));
        }
    }
    let h = store.pool().acquire(&id).unwrap();
    let c = h.conn().unwrap();
    let db = unsafe { c.handle() };
    let mut s = unsafe { ffi::sqlite3_next_stmt(db, std::ptr::null_mut()) };
    let mut rows = vec![];
    while !s.is_null() {
        let sql = unsafe { CStr::from_ptr(ffi::sqlite3_sql(s)) }
            .to_string_lossy()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let run = unsafe { ffi::sqlite3_stmt_status(s, ffi::SQLITE_STMTSTATUS_RUN, 0) };
        let vm = unsafe { ffi::sqlite3_stmt_status(s, ffi::SQLITE_STMTSTATUS_VM_STEP, 0) };
        let mem = unsafe { ffi::sqlite3_stmt_status(s, ffi::SQLITE_STMTSTATUS_MEMUSED, 0) };
        rows.push((run, vm, mem, sql));
        s = unsafe { ffi::sqlite3_next_stmt(db, s) };
    }
    rows.sort_by_key(|r| -(r.1 as i64));
    let (mut tr, mut tv) = (0, 0);
    for (run, vm, mem, sql) in &rows {
        tr += run;
        tv += vm;
        println!(
            "{:6.2} runs {:8.1} steps {:6} B  {}",
            *run as f64 / msgs as f64,
            *vm as f64 / msgs as f64,
            mem,
            &sql[..sql.len().min(150)]
        );
    }
    println!(
        "total per msg: {:.2} runs, {:.1} vm steps, {} statements",
        tr as f64 / msgs as f64,
        tv as f64 / msgs as f64,
        rows.len()
    );
}
