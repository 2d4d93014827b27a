//! Listeners and connections: accept, size-checked frames, responses in request order.
//! Imports `protocol` and `api`.

pub mod admission;
pub mod connection;
pub mod listener;
pub mod sasl;
pub mod security_groups;
pub mod tls;
pub mod transport;
