//! Integration tests: the real `dpf` binary over real files. One test binary for all of them.

mod checks;
mod delivery;
mod fan_out;
mod gcp;
mod list;
mod local;
mod memory;
mod mutations;
mod plan;
mod products;
mod run;
mod schedule;
mod secret_manager;
mod server;
mod shards;
mod state;
mod util;
mod validate;
mod warehouse;
