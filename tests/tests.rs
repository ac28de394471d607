//! sluice's integration tests, in one binary: the real binary and the real

#![deny(clippy::undocumented_unsafe_blocks)]
//! library on 127.0.0.1 with port 0, real datagrams, real whisper files and
//! the real peers the scripts install (Etsy's statsd, Python whisper,
//! carbon-cache). ARCHITECTURE.md's Testing section says which test needs
//! which peer.

mod common;

mod admin;
mod agent;
mod alloc;
mod bench;
mod carbon_forwarding;
mod carbon_receivers;
mod etsy_parity;
mod events;
mod federation;
mod graphite_oracle;
mod hostile_store;
mod in_process;
mod kernel_drops;
mod page;
mod parser_props;
mod proxy;
mod reload;
mod render_props;
mod series_caps;
mod tag_oracle;
mod tags;
mod tap;
mod unix_sockets;
mod victoria;
mod whisper_fixtures;
mod whisper_interop;
