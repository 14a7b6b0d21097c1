//! What a session allocates: nothing per message while it talks at chat
//! rates (its buffers come back from the pool each time), and no buffer
//! while it is quiet. This test binary counts every allocation of its
//! process (its own global allocator), and runs on paused time, so minutes
//! of chat take no time.

mod common;

use common::{Chat, put_chat_frame};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use plaza_net::{Handle, Handler, Server, ServerConfig, SessionId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicIsize = AtomicIsize::new(0);

// Counting allocations needs a global allocator, and that is an unsafe
// trait: the only unsafe code outside the bench crate's twin of it.
// SAFETY: every call goes to the system allocator unchanged; the counters
// beside it allocate nothing.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Echo(Handle);

impl Handler for Echo {
    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        let _ = self.0.send_slice(id, frame);
    }
}

/// One message and its echo, then a pause: a member chatting.
async fn talk(c: &mut TcpStream, frame: &[u8], echo: &mut [u8], pause: Duration) {
    c.write_all(frame).await.unwrap();
    c.read_exact(echo).await.unwrap();
    assert_eq!(echo, frame);
    tokio::time::sleep(pause).await;
}

#[tokio::test(start_paused = true)]
async fn a_talking_session_allocates_nothing_per_message_and_quiet_ones_hold_no_buffer() {
    let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), Chat);
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    server.start(Echo(handle.clone()));
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut b = BytesMut::new();
    put_chat_frame(&mut b, 300, &[7; 64]);
    let frame = b.to_vec();
    let mut echo = vec![0; frame.len()];
    let pause = Duration::from_millis(100);

    // Warm up: the session's buffers and the runtime's are in place.
    for _ in 0..20 {
        talk(&mut c, &frame, &mut echo, pause).await;
    }
    // A minute of chat at ten messages a second: not one allocation.
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..600 {
        talk(&mut c, &frame, &mut echo, pause).await;
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(allocs, 0, "{allocs} allocations for 600 messages");

    // A hundred more sessions each say something and fall quiet: each holds
    // its task, its socket and its state, but no 4 KiB receive buffer and
    // no send queue.
    let live = LIVE.load(Ordering::Relaxed);
    let mut quiet = Vec::new();
    for _ in 0..100 {
        let mut q = TcpStream::connect(addr).await.unwrap();
        talk(&mut q, &frame, &mut echo, pause).await;
        quiet.push(q);
    }
    let per_session = (LIVE.load(Ordering::Relaxed) - live) / 100;
    assert!(per_session < 3072, "a quiet session holds {per_session} bytes");

    // And the first talks again as before.
    talk(&mut c, &frame, &mut echo, pause).await;
    assert_eq!(handle.session_count(), 101);
}
