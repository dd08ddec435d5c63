//! openraft's [`AsyncRuntime`] over our `tokio` dependency, which is madsim's simulator under
//! `--cfg madsim` and plain tokio otherwise.
//!
//! openraft's own `TokioRuntime` spawns and sleeps on the real tokio it links, which panics inside
//! the simulator; and its random election timeouts come from `rand::thread_rng`, which madsim does
//! not seed. Here every spawn, sleep, timeout and clock read goes through our `tokio`, and the
//! random source is madsim's seeded generator in simulation (so a seed replays the same elections)
//! and the operating system's thread generator outside it. openraft's internal channels stay on
//! tokio's `sync` module, which needs no runtime and so works under both.

use std::future::Future;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::async_runtime::AsyncOneshotSendExt;
use openraft::{AsyncRuntime, OptionalSend};

/// The runtime marker named in the raft type config.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SimRuntime;

/// A point in time on our tokio's clock (virtual under madsim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RaftInstant(tokio::time::Instant);

impl Add<Duration> for RaftInstant {
    type Output = RaftInstant;
    fn add(self, d: Duration) -> RaftInstant {
        RaftInstant(self.0 + d)
    }
}

impl AddAssign<Duration> for RaftInstant {
    fn add_assign(&mut self, d: Duration) {
        self.0 += d;
    }
}

impl Sub<Duration> for RaftInstant {
    type Output = RaftInstant;
    fn sub(self, d: Duration) -> RaftInstant {
        RaftInstant(self.0 - d)
    }
}

impl Sub<RaftInstant> for RaftInstant {
    type Output = Duration;
    fn sub(self, other: RaftInstant) -> Duration {
        self.0.saturating_duration_since(other.0)
    }
}

impl SubAssign<Duration> for RaftInstant {
    fn sub_assign(&mut self, d: Duration) {
        self.0 -= d;
    }
}

impl openraft::Instant for RaftInstant {
    fn now() -> RaftInstant {
        RaftInstant(tokio::time::Instant::now())
    }
}

/// A sleep on our tokio, boxed so the type is the same under both runtimes.
pub type RaftSleep = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// A future bounded by a deadline on our tokio.
pub struct RaftTimeout<F> {
    future: Pin<Box<F>>,
    sleep: RaftSleep,
}

impl<R, F: Future<Output = R>> Future for RaftTimeout<F> {
    type Output = Result<R, TimedOut>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(r) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(r));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TimedOut)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The deadline of a [`RaftTimeout`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub struct TimedOut;

/// A spawned task's handle; resolves to its output, or an error if it panicked or was aborted.
pub struct RaftJoinHandle<T>(tokio::task::JoinHandle<T>);

impl<T> Future for RaftJoinHandle<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// The sending half of a one-shot channel.
pub struct OneshotSender<T>(tokio::sync::oneshot::Sender<T>);

impl<T> std::fmt::Debug for OneshotSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneshotSender")
    }
}

impl<T: OptionalSend> AsyncOneshotSendExt<T> for OneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

/// Where openraft draws its election timeouts from.
#[cfg(madsim)]
pub type RaftRng = madsim::rand::GlobalRng;
/// Where openraft draws its election timeouts from.
#[cfg(not(madsim))]
pub type RaftRng = rand::rngs::ThreadRng;

impl AsyncRuntime for SimRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = RaftJoinHandle<T>;
    type Sleep = RaftSleep;
    type Instant = RaftInstant;
    type TimeoutError = TimedOut;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = RaftTimeout<T>;
    type ThreadLocalRng = RaftRng;
    type OneshotSender<T: OptionalSend> = OneshotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        RaftJoinHandle(tokio::spawn(future))
    }

    fn sleep(duration: Duration) -> RaftSleep {
        Box::pin(tokio::time::sleep(duration))
    }

    fn sleep_until(deadline: RaftInstant) -> RaftSleep {
        Box::pin(tokio::time::sleep_until(deadline.0))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> RaftTimeout<F> {
        RaftTimeout {
            future: Box::pin(future),
            sleep: Self::sleep(duration),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: RaftInstant,
        future: F,
    ) -> RaftTimeout<F> {
        RaftTimeout {
            future: Box::pin(future),
            sleep: Self::sleep_until(deadline),
        }
    }

    fn is_panic(join_error: &tokio::task::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> RaftRng {
        #[cfg(madsim)]
        {
            madsim::rand::thread_rng()
        }
        #[cfg(not(madsim))]
        {
            rand::thread_rng()
        }
    }

    fn oneshot<T: OptionalSend>() -> (OneshotSender<T>, tokio::sync::oneshot::Receiver<T>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (OneshotSender(tx), rx)
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use openraft::Instant as _;

    #[tokio::test]
    async fn timeout_fires_on_a_slow_future_and_not_on_a_ready_one() {
        let slow = SimRuntime::timeout(Duration::from_millis(10), std::future::pending::<()>());
        assert_eq!(slow.await, Err(TimedOut));
        let ready = SimRuntime::timeout(Duration::from_secs(10), async { 7 });
        assert_eq!(ready.await, Ok(7));
    }

    #[tokio::test]
    async fn instants_order_and_subtract_without_underflow() {
        let a = RaftInstant::now();
        let b = a + Duration::from_millis(5);
        assert!(b > a);
        assert_eq!(b - a, Duration::from_millis(5));
        assert_eq!(a - b, Duration::ZERO);
    }
}
