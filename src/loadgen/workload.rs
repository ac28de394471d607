//! What `sluice bench` sends, and what an exact StatsD daemon must flush
//! for it.
//!
//! Lines are generated deterministically: line i's type follows a fixed
//! interleaving of the mix, each type walks its own keys in turn, and
//! counters and timers cycle through the sample rates. While generating,
//! the expected aggregates are summed per key: counter totals (value/rate),
//! timer counts (1/rate), sums, extremes, each gauge's last value and each
//! set's member count (every member is unique, so counts add up across
//! flushes).

use std::path::PathBuf;
use std::time::Duration;

/// Percentages of each metric type; they sum to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Percent counters.
    pub counters: u32,
    /// Percent timers.
    pub timers: u32,
    /// Percent gauges.
    pub gauges: u32,
    /// Percent sets.
    pub sets: u32,
}

impl Mix {
    /// Counters only.
    pub const COUNTERS_ONLY: Mix = Mix {
        counters: 100,
        timers: 0,
        gauges: 0,
        sets: 0,
    };

    /// Parses "counters,timers,gauges,sets" percentages, e.g. "70,15,10,5".
    pub fn parse(text: &str) -> Result<Mix, String> {
        let parts: Vec<u32> = text
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                format!("--mix {text:?}: four whole percentages for counters,timers,gauges,sets")
            })?;
        let [counters, timers, gauges, sets] = parts[..] else {
            return Err(format!(
                "--mix {text:?}: four percentages (counters,timers,gauges,sets), e.g. 70,15,10,5"
            ));
        };
        if counters + timers + gauges + sets != 100 {
            return Err(format!(
                "--mix {text:?}: the percentages must add up to 100"
            ));
        }
        Ok(Mix {
            counters,
            timers,
            gauges,
            sets,
        })
    }

    fn shares(&self) -> [u32; 4] {
        [self.counters, self.timers, self.gauges, self.sets]
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}% counters, {}% timers, {}% gauges, {}% sets",
            self.counters, self.timers, self.gauges, self.sets
        )
    }
}

#[derive(Debug, Clone)]
/// What `sluice bench` sends.
pub struct Workload {
    /// Lines to send in all.
    pub lines: u64,
    /// Distinct keys, shared out between the types by the mix.
    pub keys: u64,
    /// Lines per datagram.
    pub lines_per_datagram: usize,
    /// Lines per second; 0 = as fast as one sender thread can.
    pub rate: u64,
    /// Source sockets the one sender thread rotates over (clients).
    pub sockets: usize,
    /// The targets' flush interval.
    pub flush: Duration,
    /// The type mix.
    pub mix: Mix,
    /// Sample rates counters and timers cycle through (gauges and sets
    /// ignore rates in Etsy, so they are sent without one).
    pub sample_rates: Vec<f64>,
    /// Path to Etsy's stats.js (for the etsy target).
    pub etsy_stats_js: PathBuf,
    /// Config file for the sluice target.
    pub sluice_config: Option<PathBuf>,
    /// brubeck's binary (for the brubeck target).
    pub brubeck: Option<PathBuf>,
    /// statsite's binary (for the statsite target).
    pub statsite: Option<PathBuf>,
}

/// The four metric types, in mix order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// A counter.
    Counter,
    /// A timer.
    Timer,
    /// A gauge.
    Gauge,
    /// A set.
    Set,
}

impl Type {
    const ALL: [Type; 4] = [Type::Counter, Type::Timer, Type::Gauge, Type::Set];

    /// The key prefix the bench uses for this type: `bench.<c|t|g|s>.k<n>`.
    pub fn tag(self) -> &'static str {
        match self {
            Type::Counter => "c",
            Type::Timer => "t",
            Type::Gauge => "g",
            Type::Set => "s",
        }
    }
}

/// What one timer key must show, summed over all flushes.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimerExpect {
    /// Samples counted (value / rate).
    pub count: f64,
    /// Sum of the values.
    pub sum: f64,
    /// Lowest value.
    pub lower: f64,
    /// Highest value.
    pub upper: f64,
    /// Lines sent.
    pub sent: u64,
}

/// The exact aggregates the workload implies, per type and key.
#[derive(Debug, Default)]
pub struct Expected {
    /// Lines sent per type.
    pub lines: [u64; 4],
    /// Counter totals per key.
    pub counters: Vec<f64>,
    /// Timer expectations per key.
    pub timers: Vec<TimerExpect>,
    /// Last value sent, per gauge key (None: never sent).
    pub gauges: Vec<Option<f64>>,
    /// Unique members per set key.
    pub sets: Vec<u64>,
}

impl Expected {
    /// Lines sent of type `t`.
    pub fn lines_of(&self, t: Type) -> u64 {
        self.lines[t as usize]
    }
}

/// The generated datagrams and what they must add up to.
pub struct Generated {
    /// The datagrams, in sending order.
    pub datagrams: Vec<Vec<u8>>,
    /// What they add up to.
    pub expected: Expected,
}

/// Keys per type: the workload's keys shared out by the mix (at least one
/// per type in use).
pub fn keys_per_type(w: &Workload) -> [u64; 4] {
    let shares = w.mix.shares();
    let mut keys = [0u64; 4];
    for (i, share) in shares.iter().enumerate() {
        if *share > 0 {
            keys[i] = (w.keys * u64::from(*share) / 100).max(1);
        }
    }
    keys
}

/// Line i's type: a fixed interleaving of 100 slots in which each type
/// holds its share (37 is coprime with 100, so i*37 % 100 visits every
/// slot once per hundred lines and spreads the types out).
fn slot_types(mix: Mix) -> [Type; 100] {
    let mut slots = [Type::Counter; 100];
    let mut next = 0usize;
    for (t, share) in Type::ALL.iter().zip(mix.shares()) {
        for _ in 0..share {
            slots[next] = *t;
            next += 1;
        }
    }
    let mut spread = [Type::Counter; 100];
    for (i, s) in spread.iter_mut().enumerate() {
        *s = slots[i * 37 % 100];
    }
    spread
}

/// The datagrams of `w` and their exact aggregates.
pub fn generate(w: &Workload) -> Generated {
    let keys = keys_per_type(w);
    let rates: Vec<f64> = if w.sample_rates.is_empty() {
        vec![1.0]
    } else {
        w.sample_rates.clone()
    };
    let slots = slot_types(w.mix);
    let mut expected = Expected {
        counters: vec![0.0; keys[0] as usize],
        timers: vec![TimerExpect::default(); keys[1] as usize],
        gauges: vec![None; keys[2] as usize],
        sets: vec![0; keys[3] as usize],
        ..Expected::default()
    };
    let per = w.lines_per_datagram.max(1);
    let mut datagrams = Vec::with_capacity(w.lines.div_ceil(per as u64) as usize);
    let mut datagram = Vec::with_capacity(per * 32);
    let mut in_datagram = 0usize;
    let mut number = itoa::Buffer::new();
    let mut float = ryu_js::Buffer::new();
    for i in 0..w.lines {
        let t = slots[(i % 100) as usize];
        let n = expected.lines[t as usize];
        expected.lines[t as usize] += 1;
        let key = (n % keys[t as usize]) as usize;
        // Rotate the rate per round of keys too, so one key sees them all.
        let rate = rates[((n + n / keys[t as usize]) % rates.len() as u64) as usize];
        if in_datagram > 0 {
            datagram.push(b'\n');
        }
        datagram.extend_from_slice(b"bench.");
        datagram.extend_from_slice(t.tag().as_bytes());
        datagram.extend_from_slice(b".k");
        datagram.extend_from_slice(number.format(key).as_bytes());
        datagram.push(b':');
        match t {
            Type::Counter => {
                datagram.extend_from_slice(b"1|c");
                expected.counters[key] += 1.0 / rate;
            }
            Type::Timer => {
                let value = (n * 7 % 1000) as f64;
                datagram.extend_from_slice(number.format(n * 7 % 1000).as_bytes());
                datagram.extend_from_slice(b"|ms");
                let e = &mut expected.timers[key];
                if e.sent == 0 {
                    e.lower = value;
                    e.upper = value;
                }
                e.count += 1.0 / rate;
                e.sum += value;
                e.lower = e.lower.min(value);
                e.upper = e.upper.max(value);
                e.sent += 1;
            }
            Type::Gauge => {
                datagram.extend_from_slice(number.format(n).as_bytes());
                datagram.extend_from_slice(b"|g");
                expected.gauges[key] = Some(n as f64);
            }
            Type::Set => {
                // Unique members: counts add up across flushes exactly.
                datagram.extend_from_slice(b"m");
                datagram.extend_from_slice(number.format(n).as_bytes());
                datagram.extend_from_slice(b"|s");
                expected.sets[key] += 1;
            }
        }
        if rate != 1.0 && matches!(t, Type::Counter | Type::Timer) {
            datagram.extend_from_slice(b"|@");
            datagram.extend_from_slice(float.format(rate).as_bytes());
        }
        in_datagram += 1;
        if in_datagram == per {
            datagrams.push(std::mem::replace(
                &mut datagram,
                Vec::with_capacity(per * 32),
            ));
            in_datagram = 0;
        }
    }
    if in_datagram > 0 {
        datagrams.push(datagram);
    }
    Generated {
        datagrams,
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(lines: u64, keys: u64, mix: Mix, rates: &[f64]) -> Workload {
        Workload {
            lines,
            keys,
            lines_per_datagram: 25,
            rate: 0,
            sockets: 1,
            flush: Duration::from_secs(1),
            mix,
            sample_rates: rates.to_vec(),
            etsy_stats_js: PathBuf::new(),
            sluice_config: None,
            brubeck: None,
            statsite: None,
        }
    }

    #[test]
    fn mix_parses_and_refuses_bad_shares() {
        assert_eq!(
            Mix::parse("70,15,10,5"),
            Ok(Mix {
                counters: 70,
                timers: 15,
                gauges: 10,
                sets: 5
            })
        );
        assert!(Mix::parse("70,15,10").unwrap_err().contains("four"));
        assert!(Mix::parse("70,15,10,6").unwrap_err().contains("100"));
        assert!(Mix::parse("a,b,c,d").unwrap_err().contains("percentages"));
    }

    #[test]
    fn mixed_lines_follow_the_shares_and_expectations_add_up() {
        let w = workload(
            10_000,
            100,
            Mix::parse("70,15,10,5").unwrap(),
            &[1.0, 0.5, 0.1],
        );
        let g = generate(&w);
        assert_eq!(g.expected.lines, [7000, 1500, 1000, 500]);
        assert_eq!(g.datagrams.len(), 400);
        let text: Vec<String> = g
            .datagrams
            .iter()
            .map(|d| String::from_utf8(d.clone()).unwrap())
            .collect();
        let all: Vec<&str> = text.iter().flat_map(|d| d.split('\n')).collect();
        assert_eq!(all.len(), 10_000);
        assert_eq!(
            all.iter().filter(|l| l.ends_with("|c|@0.1")).count(),
            all.iter().filter(|l| l.contains("|c")).count() / 3
        );
        // Each counter line adds 1/rate: rates 1, 0.5, 0.1 in equal thirds.
        let total: f64 = g.expected.counters.iter().sum();
        let per_round = 1.0 + 2.0 + 10.0;
        assert!((total - 7000.0 / 3.0 * per_round).abs() < 20.0, "{total}");
        assert_eq!(g.expected.sets.iter().sum::<u64>(), 500);
        assert!(g.expected.gauges.iter().all(Option::is_some));
        assert!(all
            .iter()
            .any(|l| l.starts_with("bench.s.k") && l.ends_with("|s")));
    }

    #[test]
    fn counters_only_is_the_plain_workload() {
        let w = workload(100, 10, Mix::COUNTERS_ONLY, &[]);
        let g = generate(&w);
        let first = String::from_utf8(g.datagrams[0].clone()).unwrap();
        assert!(
            first.starts_with("bench.c.k0:1|c\nbench.c.k1:1|c\n"),
            "{first}"
        );
        assert_eq!(g.expected.counters, vec![10.0; 10]);
    }
}
