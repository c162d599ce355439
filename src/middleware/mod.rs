//! The middleware: its settings (the builder, every default and why) in, and the service
//! that opens a unit of work per request and commits or aborts it from the response, out.

mod builder;
mod response;
mod service;

pub use builder::MemcacheSessionBuilder;
pub use response::SessionResponse;
pub use service::{MemcacheSession, MemcacheSessionMiddleware};
