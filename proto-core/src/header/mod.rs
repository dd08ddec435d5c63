//! Typed request and response headers over extFields.
