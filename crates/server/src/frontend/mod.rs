//! Front ends: one per wire format.
//!
//! The hub emits format-neutral events addressed to sessions; a front end
//! decodes its clients' requests into the hub's inputs and turns the hub's
//! events into its own bytes, once per fan-out, shared by all of its
//! recipients. The binary protocol (Plaza's and the seeds' packets) is the
//! first; each further format is one more module here.

pub(crate) mod binary;
