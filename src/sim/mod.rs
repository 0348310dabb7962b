//! TEMPORARY STUB: replaced by the simulator.
#![allow(missing_docs)]
use std::net::SocketAddr;
pub const SIM_READ_KEY: &str = "jb_sim_read_0123456789abcdef";
pub const SIM_WRITE_KEY: &str = "jb_sim_write_0123456789abcdef";
#[derive(Clone, Debug)]
pub struct SimConfig { pub company_domains: Vec<String>, pub rate_limit_per_minute: Option<u32> }
impl Default for SimConfig { fn default() -> Self { Self { company_domains: vec!["acme-partners.io".into()], rate_limit_per_minute: None } } }
pub struct Simulator;
#[derive(Clone)]
pub struct SimHandle { addr: SocketAddr }
impl Simulator { pub async fn start(addr: SocketAddr, _c: SimConfig) -> std::io::Result<SimHandle> { Ok(SimHandle { addr }) } }
impl SimHandle { pub fn base_url(&self) -> String { format!("http://{}", self.addr) } pub fn user_ids(&self) -> Vec<u64> { vec![456, 457] } pub fn shutdown(&self) {} }
