//! The Flotilla node host: everything around the sans-IO core that touches the world.
//!
//! Modules:
//! - [`driver`]: the async loop that pumps a core `Node` (shared with the turmoil simulator);
//! - [`network`]: the `Network` trait the driver runs on, and its events;
//! - [`clock`]: the `Clock` trait and the tokio-time clock;
//! - [`framing`]: length-prefixed core messages over any async byte stream;
//! - [`views`]: JSON views of status and peers for the API and CLI.
//!
//! ```no_run
//! # async fn demo(node: flotilla_core::Node, net: impl flotilla_node::network::Network) {
//! use flotilla_node::{clock::TokioClock, driver::{Driver, NoObserver}};
//! let (driver, handle) = Driver::new(node, net, TokioClock::system(), NoObserver);
//! tokio::spawn(async move { let _ = handle.status().await; });
//! let _node = driver.run().await;
//! # }
//! ```

pub mod clock;
pub mod driver;
pub mod framing;
pub mod network;
pub mod views;
