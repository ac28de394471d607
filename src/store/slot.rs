//! Flushes finer than a file's precision: every flushed point that falls
//! in the slot being filled is combined with the ones before it by the
//! file's aggregation method (sum for counts, last for gauges, max for
//! upper, min for lower, average for the rest, per
//! storage-aggregation.conf), instead of overwriting them.

use super::format::Aggregation;

/// The slot a file's finest archive is filling, and what went into it.
#[derive(Debug, Clone, Copy)]
pub struct SlotState {
    /// The slot's timestamp.
    pub slot: i64,
    sum: f64,
    count: u32,
    last: f64,
    max: f64,
    min: f64,
    absmax: f64,
    absmin: f64,
}

impl SlotState {
    fn new(slot: i64, value: f64) -> SlotState {
        SlotState {
            slot,
            sum: value,
            count: 1,
            last: value,
            max: value,
            min: value,
            absmax: value,
            absmin: value,
        }
    }

    fn add(&mut self, value: f64) {
        self.sum += value;
        self.count += 1;
        self.last = value;
        self.max = self.max.max(value);
        self.min = self.min.min(value);
        if value.abs() > self.absmax.abs() {
            self.absmax = value;
        }
        if value.abs() < self.absmin.abs() {
            self.absmin = value;
        }
    }

    /// The slot's value under `method`.
    pub fn value(&self, method: Aggregation) -> f64 {
        match method {
            Aggregation::Average | Aggregation::AvgZero => self.sum / f64::from(self.count),
            Aggregation::Sum => self.sum,
            Aggregation::Last => self.last,
            Aggregation::Max => self.max,
            Aggregation::Min => self.min,
            Aggregation::AbsMax => self.absmax,
            Aggregation::AbsMin => self.absmin,
        }
    }
}

/// Combines `points` (in time order) into one value per slot of `step`
/// seconds, continuing `state` (the slot being filled, if any). `existing`
/// gives the value a file already holds at a slot, used when a slot is met
/// with no state (after a restart or a reopen), so what an earlier flush
/// wrote into it is kept. Returns the (slot, value) points to write.
pub fn combine(
    points: &[(i64, f64)],
    step: i64,
    method: Aggregation,
    state: &mut Option<SlotState>,
    mut existing: impl FnMut(i64) -> Option<f64>,
) -> Vec<(i64, f64)> {
    let step = step.max(1);
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(points.len());
    for &(ts, value) in points {
        let slot = ts - ts.rem_euclid(step);
        match state {
            Some(s) if s.slot == slot => s.add(value),
            Some(s) if s.slot > slot => {
                // An older slot than the one being filled: written as is.
                out.push((ts, value));
                continue;
            }
            _ => {
                let fresh = state.is_none();
                let mut s = match existing(slot).filter(|_| fresh) {
                    Some(before) => {
                        let mut s = SlotState::new(slot, before);
                        s.add(value);
                        s
                    }
                    None => SlotState::new(slot, value),
                };
                s.slot = slot;
                *state = Some(s);
            }
        }
        let Some(s) = state else { continue };
        let combined = (slot, s.value(method));
        match out.last_mut() {
            Some(last) if last.0 == slot => *last = combined,
            _ => out.push(combined),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_flushes_into_ten_second_slots() {
        let mut state = None;
        let flushes: Vec<(i64, f64)> = (100..112).map(|ts| (ts, 1.0)).collect();
        let mut written = Vec::new();
        for p in &flushes {
            written.extend(combine(
                std::slice::from_ref(p),
                10,
                Aggregation::Sum,
                &mut state,
                |_| None,
            ));
        }
        // The last write of each slot holds the slot's total.
        let final_of = |slot: i64| written.iter().rev().find(|(s, _)| *s == slot).map(|p| p.1);
        assert_eq!(final_of(100), Some(10.0));
        assert_eq!(final_of(110), Some(2.0));
        let mut state = None;
        let avg = combine(
            &[(100, 2.0), (101, 4.0), (105, 9.0)],
            10,
            Aggregation::Average,
            &mut state,
            |_| None,
        );
        assert_eq!(avg, vec![(100, 5.0)]);
        let mut state = None;
        let max = combine(
            &[(100, 2.0), (101, 4.0), (111, 1.0)],
            10,
            Aggregation::Max,
            &mut state,
            |_| None,
        );
        assert_eq!(max, vec![(100, 4.0), (110, 1.0)]);
    }

    #[test]
    fn a_restart_keeps_what_the_slot_already_holds() {
        let mut state = None;
        let out = combine(&[(104, 3.0)], 10, Aggregation::Sum, &mut state, |slot| {
            (slot == 100).then_some(5.0)
        });
        assert_eq!(out, vec![(100, 8.0)]);
        // Only for the first slot met without state.
        let out = combine(&[(113, 1.0)], 10, Aggregation::Sum, &mut state, |_| {
            Some(50.0)
        });
        assert_eq!(out, vec![(110, 1.0)]);
    }
}
