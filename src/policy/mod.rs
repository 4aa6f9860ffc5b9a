//! Delivery policy: consent, routing rules, circuit breakers.

pub mod breaker;
pub mod consent;
pub mod pace;
pub mod routing;
