//! The e-mail pieces weft's SendGrid and Mailgun adapters share.
//!
//! Both adapters carry the same kind of mail with the same rules; only the wire formats differ.
//! What is the same logic lives here:
//! - [`email`]: RFC 5322 mailboxes (`Name <a@b>`), address lists, message ids with and without
//!   angle brackets.
//! - [`multipart`]: a `multipart/form-data` reader (inbound mail arrives as forms) and writer.
//! - [`outbound`]: the checks an outgoing mail passes before any request (channel, recipient,
//!   sender, subject, body or template, `Message-ID`, `Reply-To`) and its threading headers.
//! - [`inbound`]: threading headers of an inbound mail, and the [`weft_provider::InboundMessage`]
//!   built from it (provider id and dedupe key rules).
//! - [`config`]: the e-mail settings both read the same way (`from`, `senders`, channels).
//! - Feature `simulator`: [`simulator`], the state and posting every e-mail simulator needs.
//! - Feature `testing`: [`testing`], scaffolding for the adapters' integration tests.

pub mod config;
pub mod email;
pub mod inbound;
pub mod multipart;
pub mod outbound;

#[cfg(feature = "simulator")]
pub mod simulator;

#[cfg(feature = "testing")]
pub mod testing;
