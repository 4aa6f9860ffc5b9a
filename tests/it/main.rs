//! Integration tests through the HTTP API.
