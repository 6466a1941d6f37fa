//! One integration test binary: every test runs the real server on 127.0.0.1:0 with a temp
//! data dir and talks HTTP to it (or runs the real `tarn` binary).

mod backup;
mod books;
mod crash;
mod harness;
mod helpers;
mod hostile;
mod limits;
mod llama;
mod llm;
mod messy;
mod ops;
mod parser;
mod placement;
mod pool;
mod props;
mod replica;
mod scheduler;
mod shop;
mod staff;
mod sync;
mod telegram;
mod tenants;
mod whatsapp;
