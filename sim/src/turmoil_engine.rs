//! The turmoil engine (in progress).
