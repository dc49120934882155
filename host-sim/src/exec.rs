//! A deterministic single-threaded executor over the virtual clock.
//!
//! It polls woken tasks in spawn order; when no task is woken it fires due alarms or advances
//! the clock to the next one. Both the number of steps and the virtual time are bounded, so a
//! livelock (a task that keeps waking itself) or a deadlock fails the test instead of hanging.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use embassy_time::Duration;

use crate::clock;

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Flag {
    fn new_woken() -> Arc<Self> {
        Arc::new(Flag(AtomicBool::new(true)))
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

struct Task<'a> {
    future: Pin<Box<dyn Future<Output = ()> + 'a>>,
    flag: Arc<Flag>,
    done: bool,
}

/// Runs background tasks (stack runners) while driving one main future to completion.
pub struct Executor<'a> {
    tasks: Vec<Task<'a>>,
    /// Upper bound on executor turns.
    pub max_steps: usize,
    /// Upper bound on virtual time since the clock's reset.
    pub max_time: Duration,
}

impl<'a> Default for Executor<'a> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Executor<'a> {
    pub fn new() -> Self {
        Self {
            tasks: Vec::new(),
            max_steps: 200_000,
            max_time: Duration::from_secs(600),
        }
    }

    /// Add a background task; its output is discarded.
    pub fn spawn<F: Future + 'a>(&mut self, future: F) {
        self.tasks.push(Task {
            future: Box::pin(async move {
                let _ = future.await;
            }),
            flag: Flag::new_woken(),
            done: false,
        });
    }

    /// Poll everything until `main` completes, advancing virtual time whenever all tasks sleep.
    ///
    /// # Panics
    /// When the step or time budget runs out, or when nothing can ever wake again.
    pub fn run<T>(&mut self, main: impl Future<Output = T>) -> T {
        let mut main = pin!(main);
        let main_flag = Flag::new_woken();
        let main_waker = Waker::from(main_flag.clone());
        for _ in 0..self.max_steps {
            let mut polled = false;
            if main_flag.take() {
                polled = true;
                if let Poll::Ready(v) = main.as_mut().poll(&mut Context::from_waker(&main_waker)) {
                    return v;
                }
            }
            for task in self.tasks.iter_mut().filter(|t| !t.done) {
                if task.flag.take() {
                    polled = true;
                    let waker = Waker::from(task.flag.clone());
                    let poll = task.future.as_mut().poll(&mut Context::from_waker(&waker));
                    task.done = poll.is_ready();
                }
            }
            if !polled && clock::fire_due() == 0 {
                assert!(
                    clock::advance_to_next_alarm(),
                    "deadlock: no task is woken and no timer is pending"
                );
                assert!(
                    clock::elapsed() <= self.max_time,
                    "virtual time budget of {:?} exhausted",
                    self.max_time
                );
            }
        }
        panic!(
            "step budget of {} exhausted at {:?} (livelock?)",
            self.max_steps,
            clock::elapsed()
        );
    }
}

/// Wait for both futures; polls each when the task is woken.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}

/// Wait for all futures of the same type, in order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        for (f, r) in futures.iter_mut().zip(results.iter_mut()) {
            if r.is_none() {
                if let Poll::Ready(v) = f.as_mut().poll(cx) {
                    *r = Some(v);
                }
            }
        }
        if results.iter().all(Option::is_some) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}

/// Poll `future` once with the current task's context (to check it is pending).
pub async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}
