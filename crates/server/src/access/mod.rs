//! Who may do what, and how much: bearer tokens per role (`auth.rs`) and
//! the limits that keep one client from taking the service from the
//! others (`limits.rs`). The API's auth layer asks `Auth` and tells the
//! handlers who the `Caller` is; the handlers ask `Limits`. Neither knows
//! about HTTP routes.

pub mod auth;
pub mod limits;

pub use auth::{Auth, AuthError, Role};
pub use limits::{Caller, FollowSlot, Limits};
