//! iot-inspector: see what every device on a home network is, what it does
//! and whom it talks to, and stop it.
//!
//! The binary (`src/main.rs`) is a thin command line over these modules:
//!
//! | module | holds |
//! |---|---|
//! | [`datapath`] | loading and attaching the eBPF programs, reading their maps and samples |
//! | [`analyze`] | captures (pcap/pcapng) through the same pipeline |
//! | [`accounting`] | turning cumulative kernel counters into per-window deltas |
//! | [`dissect`] | parsing sampled frames into observations |
//! | [`inventory`] | the live table of devices |
//! | [`store`] | the redb database: windows, rollups, devices, cursors |
//! | [`config`] | the daemon's settings from UCI |
//! | [`control`] | running the owner's rules: evaluation, presence probes, nftables, edits |
//! | [`api`] | the local HTTP API over a unix socket, and its client |
//! | [`daemon`] | the single task that owns the live state |
//! | [`report`] | turning API answers into tables for people |

pub mod accounting;
pub mod analyze;
pub mod api;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dashboard;
pub mod datapath;
pub mod dissect;
pub mod explain;
pub mod export;
pub mod identify;
pub mod inventory;
pub mod labels;
pub mod names;
pub mod report;
pub mod rpcd;
pub mod rules;
pub mod store;
pub mod time;
pub mod uci;
