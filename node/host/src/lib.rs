//! The Flotilla node host: everything around the sans-IO core that touches the world.
//!
//! Modules:
//! - [`driver`]: the async loop that pumps a core `Node` (shared with the turmoil simulator);
//! - [`network`]: the `Network` trait the driver runs on, and its events;
//! - [`clock`]: the `Clock` trait and the tokio-time clock;
//! - [`executor`]: the `Executor` trait that runs job containers, and the Docker executor;
//! - [`framing`]: length-prefixed core messages over any async byte stream;
//! - [`views`]: JSON views of status and peers for the API and CLI;
//! - [`config`]: the node's TOML configuration and command-line overrides;
//! - [`keystore`]: the node's persistent ed25519 key;
//! - [`onboarding`]: a compute provider's registered capacity (measured) and the share of
//!   it the operator onboards;
//! - [`p2p`]: the production `Network` on a rust-libp2p swarm;
//! - [`metrics`]: Prometheus metrics and the observer that feeds them;
//! - [`rcmgr`]: the resource manager shared by the network and the API, the machine size
//!   its limits scale with, refusal reporting and its JSON views;
//! - [`api`]: the local HTTP API (loopback only);
//! - [`run`]: starting a production node and running it until shutdown.
//!
//! ```no_run
//! # async fn demo(node: flotilla_core::Node, net: impl flotilla_node::network::Network) {
//! use flotilla_node::{clock::TokioClock, driver::{Driver, NoObserver}};
//! let (driver, handle) = Driver::new(node, net, TokioClock::system(), NoObserver);
//! tokio::spawn(async move { let _ = handle.status().await; });
//! let _node = driver.run().await;
//! # }
//! ```

#[cfg(feature = "host")]
pub mod api;
pub mod clock;
#[cfg(feature = "host")]
pub mod config;
pub mod driver;
#[cfg(feature = "host")]
pub mod executor;
pub mod framing;
#[cfg(feature = "host")]
pub mod journal;
#[cfg(feature = "host")]
pub mod keystore;
#[cfg(feature = "host")]
pub mod metrics;
pub mod network;
#[cfg(feature = "host")]
pub mod onboarding;
#[cfg(feature = "host")]
pub mod p2p;
#[cfg(feature = "host")]
pub mod rcmgr;
#[cfg(feature = "host")]
pub mod run;
pub mod simrunner;
#[cfg(feature = "host")]
pub mod store;
pub mod views;
