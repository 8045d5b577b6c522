//! The Flotilla simulator (module map to be written).

pub mod turmoil_engine;
