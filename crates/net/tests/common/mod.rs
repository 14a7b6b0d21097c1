//! The tests' framing: a five-byte header (total length u16 LE, an id u16
//! LE, flags that must be 0), the shape of the seeds' chat framing, written
//! as a user of the crate writes one (`plaza_net::fuzzing::Five`).

pub(crate) use plaza_net::fuzzing::{Five as Chat, put_five as put_chat_frame};

// Each test file uses its own part of it.
#[allow(dead_code)]
pub(crate) mod harness;
