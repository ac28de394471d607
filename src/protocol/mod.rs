//! Wire formats, with no I/O: the StatsD line grammar (`statsd`), JavaScript
//! number parsing and formatting (`number`) and the carbon line protocol
//! (`carbon`). Everything here is pure functions over bytes.

pub mod carbon;
pub mod number;
pub mod pickle;
pub mod statsd;
