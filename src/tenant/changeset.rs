//! SQLite's changeset format ("CHANGESET FORMAT" in sqlite3session.c), written from captured
//! rows: per table a header, then one INSERT, UPDATE or DELETE record per row.
//! Invariant: what it writes is what `sqlite3session_changeset` writes for the same changes,
//! so SQLite's own `sqlite3changeset_apply` (on the phone) and `sqlite3changegroup` read it.

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};

/// One column value, exactly as SQLite stored it (text as its bytes).
#[derive(Debug, Clone)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl PartialEq for Val {
    /// Equal when SQLite would write the same bytes (a real by its bits).
    fn eq(&self, other: &Val) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Int(a), Val::Int(b)) => a == b,
            (Val::Real(a), Val::Real(b)) => a.to_bits() == b.to_bits(),
            (Val::Text(a), Val::Text(b)) | (Val::Blob(a), Val::Blob(b)) => a == b,
            _ => false,
        }
    }
}

impl From<ValueRef<'_>> for Val {
    fn from(v: ValueRef<'_>) -> Val {
        match v {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(i) => Val::Int(i),
            ValueRef::Real(f) => Val::Real(f),
            ValueRef::Text(t) => Val::Text(t.to_vec()),
            ValueRef::Blob(b) => Val::Blob(b.to_vec()),
        }
    }
}

impl ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(*i),
            Val::Real(f) => ValueRef::Real(*f),
            Val::Text(t) => ValueRef::Text(t),
            Val::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

// Record field types, and the change operations (SQLITE_INSERT, _UPDATE, _DELETE).
const UNDEFINED: u8 = 0x00;
const INTEGER: u8 = 0x01;
const FLOAT: u8 = 0x02;
const TEXT: u8 = 0x03;
const BLOB: u8 = 0x04;
const NULL: u8 = 0x05;
const TABLE: u8 = b'T';
const INSERT: u8 = 18;
const UPDATE: u8 = 23;
const DELETE: u8 = 9;

/// SQLite's variable-length integer (`sqlite3PutVarint`): big-endian groups of 7 bits.
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    debug_assert!(v < 1 << 56, "lengths and column counts are far smaller");
    let mut groups = [0u8; 8];
    let mut n = 0;
    loop {
        groups[n] = (v & 0x7f) as u8 | 0x80;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    groups[0] &= 0x7f;
    buf.extend(groups[..n].iter().rev());
}

/// Appends one record field.
pub fn put(buf: &mut Vec<u8>, v: &Val) {
    match v {
        Val::Null => buf.push(NULL),
        Val::Int(i) => {
            buf.push(INTEGER);
            buf.extend(i.to_be_bytes());
        }
        Val::Real(f) => {
            buf.push(FLOAT);
            buf.extend(f.to_bits().to_be_bytes());
        }
        Val::Text(b) | Val::Blob(b) => {
            buf.push(if matches!(v, Val::Text(_)) {
                TEXT
            } else {
                BLOB
            });
            put_varint(buf, b.len() as u64);
            buf.extend(b);
        }
    }
}

/// Builds one changeset, table by table.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
    /// Where the current table's header starts and ends: a header with no change after it
    /// is taken back.
    header: Option<(usize, usize)>,
}

impl Writer {
    /// Starts the changes of `table`, whose columns are primary-key columns where `pk` is
    /// non-zero (their position in the key, from 1).
    pub fn table(&mut self, table: &str, pk: &[u8]) {
        self.drop_empty_table();
        let start = self.buf.len();
        self.buf.push(TABLE);
        put_varint(&mut self.buf, pk.len() as u64);
        self.buf.extend(pk);
        self.buf.extend(table.as_bytes());
        self.buf.push(0);
        self.header = Some((start, self.buf.len()));
    }

    /// A new row.
    pub fn insert(&mut self, new: &[Val]) {
        self.buf.extend([INSERT, 0]);
        new.iter().for_each(|v| put(&mut self.buf, v));
    }

    /// A removed row, with all its values.
    pub fn delete(&mut self, old: &[Val]) {
        self.buf.extend([DELETE, 0]);
        old.iter().for_each(|v| put(&mut self.buf, v));
    }

    /// A changed row: the key and the old values of changed columns, then their new values.
    /// Writes nothing when no column changed.
    pub fn update(&mut self, pk: &[u8], old: &[Val], new: &[Val]) {
        let changed = |i: usize| pk[i] == 0 && old[i] != new[i];
        if !(0..old.len()).any(changed) {
            return;
        }
        self.buf.extend([UPDATE, 0]);
        for (i, v) in old.iter().enumerate() {
            if pk[i] != 0 || changed(i) {
                put(&mut self.buf, v);
            } else {
                self.buf.push(UNDEFINED);
            }
        }
        for (i, v) in new.iter().enumerate() {
            if changed(i) {
                put(&mut self.buf, v);
            } else {
                self.buf.push(UNDEFINED);
            }
        }
    }

    fn drop_empty_table(&mut self) {
        if let Some((start, end)) = self.header.take()
            && self.buf.len() == end
        {
            self.buf.truncate(start);
        }
    }

    /// The changeset (empty when nothing changed).
    pub fn finish(mut self) -> Vec<u8> {
        self.drop_empty_table();
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_sqlites() {
        let enc = |v| {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            b
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x81, 0x00]);
        assert_eq!(enc(300), [0x82, 0x2c]);
        assert_eq!(enc(16_384), [0x81, 0x80, 0x00]);
    }

    #[test]
    fn a_table_without_changes_leaves_no_header() {
        let mut w = Writer::default();
        w.table("a", &[1, 0]);
        w.update(
            &[1, 0],
            &[Val::Int(1), Val::Int(2)],
            &[Val::Int(1), Val::Int(2)],
        );
        w.table("b", &[1]);
        w.insert(&[Val::Text(b"x".to_vec())]);
        w.table("c", &[1]);
        let cs = w.finish();
        assert_eq!(cs, [b'T', 1, 1, b'b', 0, INSERT, 0, TEXT, 1, b'x']);
    }
}
