//! The `denied` table: connections the sensors' deny lists closed, from
//! their day files (`<sensor>/denials/<date>.log`), per client address and
//! rule.
//!
//! A day file is append-only, so two copies of one sensor's day (the
//! sensor's spool and an evidence store, or a copy shipped before the day
//! ended) are the same lines, one a prefix of the other: the longer is
//! taken and the other counted as a duplicate, never added twice.

use super::load::Problem;
use crate::spool::denials::{DayFile, DenialLine};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What is wrong with a day file, as rows of the `errors` table.
pub fn problems(day: &std::io::Result<DayFile>) -> Vec<Problem> {
    let problem = |file: String, reason: String| Problem {
        file,
        stage: "denials",
        reason,
    };
    match day {
        Err(e) => vec![problem(String::new(), format!("cannot read: {e}"))],
        Ok(day) => {
            let mut out: Vec<Problem> = day
                .problems
                .iter()
                .map(|(line, reason)| problem(format!("line {line}"), reason.clone()))
                .collect();
            if day.incomplete_tail {
                out.push(problem(
                    String::new(),
                    "last line incomplete (the sensor stopped while writing it), not counted"
                        .into(),
                ));
            }
            out
        }
    }
}

/// One row: `connections` from `ip` closed under `rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedRow {
    pub ip: String,
    pub rule: String,
    pub connections: u64,
    /// Start of the first and last minute counted (RFC 3339).
    pub first_seen: String,
    pub last_seen: String,
    pub sensors: Vec<String>,
}

/// What the summary says about denials.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeniedTotals {
    pub connections: u64,
    pub clients: u64,
    /// Connections allowed because the country database did not know them.
    pub allowed_unknown_country: u64,
    /// Day files met twice (the longer copy was counted).
    pub duplicate_files: u64,
}

/// Day files collected during the walk.
#[derive(Debug, Default)]
pub struct DeniedAggregate {
    days: BTreeMap<(String, String), Vec<DenialLine>>,
    duplicates: u64,
}

impl DeniedAggregate {
    /// One sensor's lines for one day.
    pub fn add(&mut self, sensor: &str, date: &str, lines: Vec<DenialLine>) {
        match self.days.entry((sensor.to_string(), date.to_string())) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(lines);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                self.duplicates += 1;
                if lines.len() > o.get().len() {
                    o.insert(lines);
                }
            }
        }
    }

    /// The rows, most connections first, and the totals.
    pub fn finish(self) -> (Vec<DeniedRow>, DeniedTotals) {
        struct Acc {
            connections: u64,
            first: String,
            last: String,
            sensors: BTreeSet<String>,
        }
        let mut totals = DeniedTotals {
            duplicate_files: self.duplicates,
            ..DeniedTotals::default()
        };
        let mut rows: BTreeMap<(IpAddr, String), Acc> = BTreeMap::new();
        for ((sensor, _), lines) in self.days {
            for line in lines {
                if !line.denied() {
                    totals.allowed_unknown_country += line.count;
                    continue;
                }
                totals.connections += line.count;
                let acc = rows.entry((line.ip, line.rule)).or_insert_with(|| Acc {
                    connections: 0,
                    first: line.minute.clone(),
                    last: line.minute.clone(),
                    sensors: BTreeSet::new(),
                });
                acc.connections += line.count;
                if line.minute < acc.first {
                    acc.first = line.minute.clone();
                }
                if line.minute > acc.last {
                    acc.last = line.minute;
                }
                acc.sensors.insert(sensor.clone());
            }
        }
        totals.clients = rows
            .keys()
            .map(|(ip, _)| *ip)
            .collect::<BTreeSet<_>>()
            .len() as u64;
        let mut rows: Vec<DeniedRow> = rows
            .into_iter()
            .map(|((ip, rule), acc)| DeniedRow {
                ip: ip.to_string(),
                rule,
                connections: acc.connections,
                first_seen: minute_start(&acc.first),
                last_seen: minute_start(&acc.last),
                sensors: acc.sensors.into_iter().collect(),
            })
            .collect();
        // Stable: ties keep the (address, rule) order of the map.
        rows.sort_by_key(|r| std::cmp::Reverse(r.connections));
        (rows, totals)
    }
}

/// `2026-12-07T06:44Z` as `2026-12-07T06:44:00.000000Z`, the spool's time format.
fn minute_start(minute: &str) -> String {
    match minute.strip_suffix('Z') {
        Some(m) => format!("{m}:00.000000Z"),
        None => minute.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::denials::parse_line;

    fn lines(text: &[&str]) -> Vec<DenialLine> {
        text.iter().map(|l| parse_line(l).unwrap()).collect()
    }

    #[test]
    fn sums_per_address_and_rule_and_takes_the_longer_copy_once() {
        let mut agg = DeniedAggregate::default();
        let day = [
            "2026-12-07T06:44Z 192.0.2.1 cidr:192.0.2.0/24 3",
            "2026-12-07T06:44Z 192.0.2.9 allowed:country-unknown 2",
            "2026-12-07T06:45Z 192.0.2.1 cidr:192.0.2.0/24 4",
            "2026-12-07T06:46Z 198.51.100.7 country:NL 1",
        ];
        agg.add("s1", "2026-12-07", lines(&day[..2]));
        agg.add("s1", "2026-12-07", lines(&day));
        agg.add(
            "s2",
            "2026-12-08",
            lines(&["2026-12-08T00:01Z 192.0.2.1 cidr:192.0.2.0/24 1"]),
        );
        let (rows, totals) = agg.finish();
        assert_eq!(
            totals,
            DeniedTotals {
                connections: 9,
                clients: 2,
                allowed_unknown_country: 2,
                duplicate_files: 1
            }
        );
        assert_eq!(rows[0].ip, "192.0.2.1");
        assert_eq!(rows[0].connections, 8);
        assert_eq!(rows[0].first_seen, "2026-12-07T06:44:00.000000Z");
        assert_eq!(rows[0].last_seen, "2026-12-08T00:01:00.000000Z");
        assert_eq!(rows[0].sensors, ["s1", "s2"]);
        assert_eq!(
            (rows[1].rule.as_str(), rows[1].connections),
            ("country:NL", 1)
        );
    }
}
