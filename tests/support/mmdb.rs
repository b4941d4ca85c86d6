//! A minimal MaxMind DB writer (format 2.0, IPv4 tree, 32-bit records), so
//! that tests can make a country database mapping loopback addresses to
//! countries. What it writes is read by the `maxminddb` crate, the reader
//! latrine uses, exactly as a GeoLite2-Country file is: a wrong byte here
//! makes the reader fail the test, it cannot pass silently.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::Path;

/// A value of the data section.
pub enum Value {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

/// The control byte: type and size; an extended type (above 7) puts its
/// number less 7 in the byte after it, before any size bytes.
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let first = if kind <= 7 { kind << 5 } else { 0 };
    let (low, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, vec![]),
        29..=284 => (29, vec![(size - 29) as u8]),
        _ => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
    };
    out.push(first | low);
    if kind > 7 {
        out.push(kind - 7);
    }
    out.extend(extra);
}

fn encode(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::U16(n) => uint(out, 5, u64::from(*n)),
        Value::U32(n) => uint(out, 6, u64::from(*n)),
        Value::U64(n) => uint(out, 9, *n),
        Value::Map(entries) => {
            control(out, 7, entries.len());
            for (k, v) in entries {
                encode(out, &Value::Str(k.clone()));
                encode(out, v);
            }
        }
        Value::Array(items) => {
            control(out, 11, items.len());
            for v in items {
                encode(out, v);
            }
        }
    }
}

/// An unsigned integer in its fewest big-endian bytes.
fn uint(out: &mut Vec<u8>, kind: u8, n: u64) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

/// A GeoLite2-Country-shaped record for `iso_code`.
pub fn country(iso_code: &str, name: &str) -> Value {
    Value::Map(vec![(
        "country".into(),
        Value::Map(vec![
            ("iso_code".into(), Value::Str(iso_code.into())),
            (
                "names".into(),
                Value::Map(vec![("en".into(), Value::Str(name.into()))]),
            ),
        ]),
    )])
}

#[derive(Clone, Copy)]
enum Record {
    Node(u32),
    Empty,
    Data(u32),
}

/// Writes an IPv4 database of type `database_type` with `networks`
/// (address, prefix length, record); networks must not nest.
pub fn write(path: &Path, database_type: &str, networks: &[(Ipv4Addr, u8, Value)]) {
    let mut data = Vec::new();
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty, Record::Empty]];
    for (address, length, value) in networks {
        let offset = data.len() as u32;
        encode(&mut data, value);
        let bits = u32::from(*address);
        let mut node = 0usize;
        for depth in 0..*length {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == *length {
                nodes[node][bit] = Record::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Record::Node(n) => n as usize,
                    Record::Empty => {
                        nodes.push([Record::Empty, Record::Empty]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Record::Node(n as u32);
                        n
                    }
                    Record::Data(_) => panic!("nested networks are not supported"),
                };
            }
        }
    }
    let count = nodes.len() as u32;
    let mut file = Vec::new();
    for node in &nodes {
        for record in node {
            let value = match *record {
                Record::Node(n) => n,
                Record::Empty => count,
                Record::Data(offset) => count + 16 + offset,
            };
            file.extend_from_slice(&value.to_be_bytes());
        }
    }
    file.extend_from_slice(&[0; 16]);
    file.extend_from_slice(&data);
    file.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    let metadata = Value::Map(vec![
        ("binary_format_major_version".into(), Value::U16(2)),
        ("binary_format_minor_version".into(), Value::U16(0)),
        ("build_epoch".into(), Value::U64(1_765_000_000)),
        ("database_type".into(), Value::Str(database_type.into())),
        (
            "description".into(),
            Value::Map(vec![("en".into(), Value::Str("latrine test".into()))]),
        ),
        ("ip_version".into(), Value::U16(4)),
        (
            "languages".into(),
            Value::Array(vec![Value::Str("en".into())]),
        ),
        ("node_count".into(), Value::U32(count)),
        ("record_size".into(), Value::U16(32)),
    ]);
    encode(&mut file, &metadata);
    std::fs::write(path, file).expect("write the test database");
}
