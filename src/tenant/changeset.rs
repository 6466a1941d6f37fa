//! SQLite's changeset format ("CHANGESET FORMAT" in sqlite3session.c), written from captured
//! rows: per table a header, then one INSERT, UPDATE or DELETE record per row. A record is
//! its fields in order, each a type byte and its value, as `put` encodes them.
//! Invariant: what it writes is what `sqlite3session_changeset` writes for the same changes,
//! so SQLite's own `sqlite3changeset_apply` (on the phone) and `sqlite3changegroup` read it.

use rusqlite::types::ValueRef;

// Field types, and the change operations (SQLITE_INSERT, _UPDATE, _DELETE).
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

/// Reads a varint written by `put_varint`: its value and length.
fn get_varint(b: &[u8]) -> (usize, usize) {
    let mut v = 0usize;
    for (i, byte) in b.iter().enumerate().take(8) {
        v = (v << 7) | (byte & 0x7f) as usize;
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    (v, b.len())
}

/// Appends one field.
pub fn put(buf: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => buf.push(NULL),
        ValueRef::Integer(i) => {
            buf.push(INTEGER);
            buf.extend(i.to_be_bytes());
        }
        ValueRef::Real(f) => {
            buf.push(FLOAT);
            buf.extend(f.to_bits().to_be_bytes());
        }
        ValueRef::Text(b) | ValueRef::Blob(b) => {
            buf.push(if matches!(v, ValueRef::Text(_)) {
                TEXT
            } else {
                BLOB
            });
            put_varint(buf, b.len() as u64);
            buf.extend(b);
        }
    }
}

/// The length of the field at the start of `b`.
fn field_len(b: &[u8]) -> usize {
    match b[0] {
        INTEGER | FLOAT => 9,
        TEXT | BLOB => {
            let (n, len) = get_varint(&b[1..]);
            1 + len + n
        }
        _ => 1,
    }
}

/// The fields of a record, in order.
pub fn fields(mut record: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if record.is_empty() {
            return None;
        }
        let (field, rest) = record.split_at(field_len(record));
        record = rest;
        Some(field)
    })
}

/// A field's value.
pub fn value(field: &[u8]) -> ValueRef<'_> {
    let eight = || field[1..9].try_into().expect("eight bytes");
    match field[0] {
        INTEGER => ValueRef::Integer(i64::from_be_bytes(eight())),
        FLOAT => ValueRef::Real(f64::from_bits(u64::from_be_bytes(eight()))),
        TEXT | BLOB => {
            let (_, len) = get_varint(&field[1..]);
            let bytes = &field[1 + len..];
            if field[0] == TEXT {
                ValueRef::Text(bytes)
            } else {
                ValueRef::Blob(bytes)
            }
        }
        _ => ValueRef::Null,
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

    /// A new row: its record.
    pub fn insert(&mut self, new: &[u8]) {
        self.buf.extend([INSERT, 0]);
        self.buf.extend(new);
    }

    /// A removed row: its record before.
    pub fn delete(&mut self, old: &[u8]) {
        self.buf.extend([DELETE, 0]);
        self.buf.extend(old);
    }

    /// A changed row, from its records before and after: the key and the old values of
    /// changed columns, then their new values. Writes nothing when no column changed.
    pub fn update(&mut self, pk: &[u8], old: &[u8], new: &[u8]) {
        let pairs = || pk.iter().zip(fields(old).zip(fields(new)));
        if !pairs().any(|(k, (o, n))| *k == 0 && o != n) {
            return;
        }
        self.buf.extend([UPDATE, 0]);
        for (k, (o, n)) in pairs() {
            if *k != 0 || o != n {
                self.buf.extend(o);
            } else {
                self.buf.push(UNDEFINED);
            }
        }
        for (k, (o, n)) in pairs() {
            if *k == 0 && o != n {
                self.buf.extend(n);
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

    fn record(values: &[ValueRef<'_>]) -> Vec<u8> {
        let mut b = Vec::new();
        values.iter().for_each(|v| put(&mut b, *v));
        b
    }

    #[test]
    fn varints_are_sqlites() {
        let enc = |v| {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(get_varint(&b), (v as usize, b.len()));
            b
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x81, 0x00]);
        assert_eq!(enc(300), [0x82, 0x2c]);
        assert_eq!(enc(16_384), [0x81, 0x80, 0x00]);
    }

    #[test]
    fn fields_read_back_what_was_put() {
        let long = "x".repeat(300);
        let values = [
            ValueRef::Integer(-7),
            ValueRef::Real(2.5),
            ValueRef::Null,
            ValueRef::Text(long.as_bytes()),
            ValueRef::Blob(b"\0\x01"),
        ];
        let rec = record(&values);
        let back: Vec<ValueRef<'_>> = fields(&rec).map(value).collect();
        assert_eq!(back, values);
    }

    #[test]
    fn a_table_without_changes_leaves_no_header() {
        let row = record(&[ValueRef::Integer(1), ValueRef::Integer(2)]);
        let mut w = Writer::default();
        w.table("a", &[1, 0]);
        w.update(&[1, 0], &row, &row);
        w.table("b", &[1]);
        w.insert(&record(&[ValueRef::Text(b"x")]));
        w.table("c", &[1]);
        let cs = w.finish();
        assert_eq!(cs, [b'T', 1, 1, b'b', 0, INSERT, 0, TEXT, 1, b'x']);
    }
}
