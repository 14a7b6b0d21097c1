//! Writes gathered while the CPU is short.
//!
//! A session's writer writes as soon as its packets are queued (after one
//! yield), so at light load a packet goes out within the runtime's turn. At
//! heavy load that costs a write per few packets, and the writes take the
//! core that the reads and the chat logic need: queues then grow until the
//! writes gather by themselves, and latency grows with them.
//!
//! With gathering on, a clock thread per server ticks every `every` (a
//! couple of milliseconds) and looks at how busy the runtime's workers are:
//! - from [`BUSY`] of their time ([`Mode::Repeat`]), a session writes at
//!   most once a tick: a writer that already wrote in this tick waits for
//!   the next, so a session that receives many packets gets them in fewer,
//!   larger writes, while one that receives a packet now and then still
//!   writes it at once;
//! - once the workers are at [`SATURATED`] for [`HOT_LOOKS`] looks in a
//!   row ([`Mode::All`]), every write waits for the next tick, so the
//!   runtime reads and runs the chat logic between ticks and writes what
//!   that queued in one round (as a single-threaded event loop such as
//!   Redis's does): latency stays near the tick while the load is more than
//!   the core can write a packet at a time.
//!
//! A mode is left only after [`QUIET_LOOKS`] looks in a row under its
//! floor: a wrong "on" costs a tick of latency, a wrong "off" lets the
//! queues grow. A packet waits at most one tick. The clock is a thread, not
//! a task, so that its ticks are not late behind the busy runtime's queue;
//! the writers hold no timer.

use std::future::{Future, poll_fn};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::RuntimeMetrics;

use crate::stats::Counter;

/// Busy share of the workers' time, over one look, from which a session
/// writes at most once a tick ([`Mode::Repeat`], entered at the first such
/// look).
const BUSY: f64 = 0.8;
/// Busy share from which every write waits for the tick ([`Mode::All`]),
/// entered after [`HOT_LOOKS`] such looks in a row: a lone busy look is
/// noise at 80%, where every write on the tick would cost latency and save
/// nothing.
const SATURATED: f64 = 0.95;
const HOT_LOOKS: u32 = 5;
/// Floors: [`Mode::All`] is left after [`QUIET_LOOKS`] looks in a row
/// under `ALL_FLOOR`, [`Mode::Repeat`] after as many under `REPEAT_FLOOR`.
const ALL_FLOOR: f64 = 0.85;
const REPEAT_FLOOR: f64 = 0.5;
const QUIET_LOOKS: u32 = 10;
/// Ticks per look at the workers' busy time (a look every 20 ms at 2 ms).
const TICKS_PER_LOOK: u32 = 10;

/// How writers wait, by how busy the runtime is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    /// Every write at once.
    #[default]
    Off = 0,
    /// At most one write per session a tick.
    Repeat = 1,
    /// Every write on the next tick.
    All = 2,
}

impl Mode {
    fn from_u8(m: u8) -> Self {
        match m {
            0 => Mode::Off,
            1 => Mode::Repeat,
            _ => Mode::All,
        }
    }
}

/// The clock writers share while the runtime is busy.
pub(crate) struct Gather {
    every: Duration,
    mode: AtomicU8,
    /// Ticks so far (wrapping).
    epoch: AtomicU32,
    waiting: Mutex<Vec<Waker>>,
    /// Writes that waited for a tick.
    held: Counter,
}

impl Gather {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every: every.max(Duration::from_millis(1)),
            mode: AtomicU8::new(Mode::Off as u8),
            epoch: AtomicU32::new(0),
            waiting: Mutex::new(Vec::new()),
            held: Counter::default(),
        }
    }

    /// Writes that waited for a tick so far.
    pub(crate) fn held(&self) -> u64 {
        self.held.get()
    }

    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::Acquire))
    }

    /// Whether writers gather now.
    pub(crate) fn is_on(&self) -> bool {
        self.mode() != Mode::Off
    }

    /// Whether every write waits for the next tick ([`Mode::All`]).
    pub(crate) fn is_saturated(&self) -> bool {
        self.mode() == Mode::All
    }

    fn waiting(&self) -> MutexGuard<'_, Vec<Waker>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The clock's tick now: a writer notes it when it writes, and passes
    /// it to [`next_write`](Self::next_write) before its next write.
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Ready at once while the runtime has time to spare, or, while it is
    /// busy but not saturated, when the clock has ticked since `wrote` (the
    /// writer's last write); else after the next tick. Polls before the
    /// tick (a packet queued, the other half of the session woken) stay
    /// pending and register nothing.
    pub(crate) fn next_write(&self, wrote: u32) -> impl Future<Output = ()> + '_ {
        let mut since = None;
        poll_fn(move |cx| {
            if let Some(e) = since {
                return if self.epoch() == e {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                };
            }
            let at_once = |e| match self.mode() {
                Mode::Off => true,
                Mode::Repeat => e != wrote,
                Mode::All => false,
            };
            if at_once(self.epoch()) {
                return Poll::Ready(());
            }
            // Under the lock the tick takes to move the epoch and the list
            // together: a waker pushed before it is woken by it (and reads
            // the old epoch), one pushed after waits in the new list for
            // the next (and reads the new one).
            let e = {
                let mut waiting = self.waiting();
                waiting.push(cx.waker().clone());
                self.epoch()
            };
            // Turned off, or ticked, since the first look: do not wait for a
            // tick that may be far away.
            if at_once(e) {
                return Poll::Ready(());
            }
            since = Some(e);
            self.held.incr();
            Poll::Pending
        })
    }

    /// One tick: every waiter may write now. The epoch moves and the list
    /// is taken under one lock (see `next_write`).
    fn tick(&self, spare: &mut Vec<Waker>) {
        {
            let mut waiting = self.waiting();
            self.epoch.fetch_add(1, Ordering::AcqRel);
            std::mem::swap(&mut *waiting, spare);
        }
        for w in spare.drain(..) {
            w.wake();
        }
    }
}

/// Starts `gather`'s clock for the runtime `metrics` describes. The thread
/// ends within a look once the server drops `gather`. If it cannot be
/// started, writes go out at once, as without gathering.
pub(crate) fn start(gather: &Arc<Gather>, metrics: RuntimeMetrics) {
    let weak = Arc::downgrade(gather);
    if let Err(e) = std::thread::Builder::new()
        .name("plaza-gather".into())
        .spawn(move || clock(&weak, &metrics))
    {
        tracing::warn!(error = %e, "no gathering clock: writes go out at once");
    }
}

/// How writers wait, from the workers' busy share look by look.
#[derive(Default)]
struct Governor {
    mode: Mode,
    /// Looks in a row at [`SATURATED`] or more.
    hot: u32,
    /// Looks in a row under the mode's floor.
    quiet: u32,
}

impl Governor {
    /// The mode after a look that saw `busy` (0 to 1).
    fn look(&mut self, busy: f64) -> Mode {
        self.hot = if busy >= SATURATED { self.hot + 1 } else { 0 };
        let floor = match self.mode {
            Mode::Off => 0.0,
            Mode::Repeat => REPEAT_FLOOR,
            Mode::All => ALL_FLOOR,
        };
        self.quiet = if busy < floor { self.quiet + 1 } else { 0 };
        let next = if self.hot >= HOT_LOOKS {
            Mode::All
        } else if self.mode == Mode::Off && busy >= BUSY {
            Mode::Repeat
        } else if self.quiet >= QUIET_LOOKS {
            match self.mode {
                Mode::All => Mode::Repeat,
                _ => Mode::Off,
            }
        } else {
            self.mode
        };
        if next != self.mode {
            (self.mode, self.quiet) = (next, 0);
        }
        next
    }
}

fn clock(gather: &Weak<Gather>, metrics: &RuntimeMetrics) {
    let Some(every) = gather.upgrade().map(|g| g.every) else {
        return;
    };
    let look_every = every * TICKS_PER_LOOK;
    let workers = metrics.num_workers();
    let busy_total = || {
        (0..workers)
            .map(|w| metrics.worker_total_busy_duration(w))
            .sum::<Duration>()
    };
    let mut governor = Governor::default();
    // When the last look was, and the workers' busy time then.
    let mut last = (Instant::now(), busy_total());
    let mut spare = Vec::new();
    loop {
        // Not gathering, it wakes only to look.
        std::thread::sleep(if governor.mode == Mode::Off {
            look_every
        } else {
            every
        });
        // Ends with the server, which holds the only strong reference.
        let Some(g) = gather.upgrade() else {
            return;
        };
        let now = Instant::now();
        let since = now.saturating_duration_since(last.0);
        if since >= look_every {
            let busy_now = busy_total();
            let wall = since.as_secs_f64() * workers as f64;
            let busy = busy_now.saturating_sub(last.1).as_secs_f64() / wall.max(f64::EPSILON);
            last = (now, busy_now);
            let was = g.mode();
            let mode = governor.look(busy);
            if mode != was {
                g.mode.store(mode as u8, Ordering::Release);
                if mode == Mode::Off {
                    spare.shrink_to(0);
                }
                tracing::debug!(busy, ?mode, "writes gathered by how busy the workers are");
            }
        }
        g.tick(&mut spare);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::task::{Context, Wake};

    use super::*;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(f: &mut (impl Future<Output = ()> + Unpin), count: &Arc<Count>) -> Poll<()> {
        let waker = Waker::from(count.clone());
        std::pin::Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_writer_waits_by_mode_and_its_last_write() {
        let g = Gather::new(Duration::from_millis(2));
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let now = g.epoch();
        let earlier = now.wrapping_sub(1);
        let set = |m: Mode| g.mode.store(m as u8, Ordering::SeqCst);
        // Off: at once, even right after a write.
        assert!(poll(&mut Box::pin(g.next_write(now)), &count).is_ready());
        // Busy: at once if its last write was in an earlier tick...
        set(Mode::Repeat);
        assert!(poll(&mut Box::pin(g.next_write(earlier)), &count).is_ready());
        // ...and until the next tick if it wrote in this one.
        let mut wait = Box::pin(g.next_write(now));
        assert!(poll(&mut wait, &count).is_pending());
        assert!(
            poll(&mut wait, &count).is_pending(),
            "a second poll before the tick"
        );
        g.tick(&mut Vec::new());
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the tick wakes the writer once"
        );
        assert!(poll(&mut wait, &count).is_ready());
        // Saturated: every write waits for the next tick.
        set(Mode::All);
        let mut wait = Box::pin(g.next_write(earlier));
        assert!(poll(&mut wait, &count).is_pending());
        g.tick(&mut Vec::new());
        assert!(poll(&mut wait, &count).is_ready());
        assert_eq!(g.held(), 2);
    }

    /// A waker that unparks its thread and says it was called.
    struct Unpark(std::thread::Thread, AtomicBool);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.1.store(true, Ordering::SeqCst);
            self.0.unpark();
        }
    }

    #[test]
    fn no_waiter_is_left_behind_by_a_tick_racing_its_registration() {
        let g = Arc::new(Gather::new(Duration::from_millis(1)));
        g.mode.store(Mode::All as u8, Ordering::SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = std::thread::spawn({
            let (g, stop) = (g.clone(), stop.clone());
            move || {
                let mut spare = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    g.tick(&mut spare);
                }
            }
        });
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        let unpark = Arc::new(Unpark(std::thread::current(), AtomicBool::new(false)));
                        let waker = Waker::from(unpark.clone());
                        let mut wait = Box::pin(g.next_write(0));
                        // The ticker never stops, so a registered waiter is
                        // woken within microseconds; one never woken was lost.
                        let deadline = Instant::now() + Duration::from_secs(30);
                        while wait.as_mut().poll(&mut Context::from_waker(&waker)).is_pending() {
                            while !unpark.1.swap(false, Ordering::SeqCst) {
                                let now = Instant::now();
                                assert!(now < deadline, "wait {i}: never woken");
                                std::thread::park_timeout(deadline - now);
                            }
                        }
                    }
                })
            })
            .collect();
        for w in waiters {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        ticker.join().unwrap();
    }

    #[test]
    fn modes_are_entered_and_left_by_looks_in_a_row() {
        let mut gov = Governor::default();
        assert_eq!(gov.look(0.7), Mode::Off);
        // One busy look: at most one write a tick.
        assert_eq!(gov.look(0.85), Mode::Repeat);
        // A lone saturated look is not enough for every write on the tick...
        assert_eq!(gov.look(0.99), Mode::Repeat);
        assert_eq!(gov.look(0.9), Mode::Repeat);
        // ...HOT_LOOKS in a row are.
        for _ in 1..HOT_LOOKS {
            assert_eq!(gov.look(0.99), Mode::Repeat);
        }
        assert_eq!(gov.look(0.99), Mode::All);
        // Above its floor it stays; under it, only after QUIET_LOOKS in a row.
        assert_eq!(gov.look(0.9), Mode::All);
        for _ in 1..QUIET_LOOKS {
            assert_eq!(gov.look(0.8), Mode::All);
        }
        assert_eq!(
            gov.look(0.9),
            Mode::All,
            "a look over the floor starts the count again"
        );
        for _ in 1..QUIET_LOOKS {
            assert_eq!(gov.look(0.8), Mode::All);
        }
        assert_eq!(gov.look(0.8), Mode::Repeat, "down one mode after the quiet looks");
        for _ in 1..QUIET_LOOKS {
            assert_eq!(gov.look(0.2), Mode::Repeat);
        }
        assert_eq!(gov.look(0.2), Mode::Off);
    }
}
