//! Slow refusals: a client refused for exceeding its own share (a connection beyond its
//! network's cap, a call beyond its connection's or network's share of a class, a bad
//! credential) hears the refusal only after `--refusal-delay`.
//!
//! A refusal is cheap to send, but a client that retries at once turns each into the next
//! request: one network's connections, refused and renewed in a loop, made the server answer
//! tens of thousands of refusals a second and took the two cores its legitimate clients needed
//! (docs/RELIABILITY.md, "Under attack"). Waiting out the delay costs the server a timer and
//! the open stream or socket; it bounds a looping client to one refusal per stream (or socket)
//! per delay, and a client that behaves (one that backs off) does not notice.
//!
//! The waits are bounded: at most `most` refusals wait at once (each is an open HTTP/2 stream
//! or a socket); later ones are answered at once, as without a delay.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Paces refusals; cheap to clone (clones share their bound).
#[derive(Clone, Debug)]
pub struct RefusalDelay {
    delay: Duration,
    waiting: Arc<Semaphore>,
}

impl RefusalDelay {
    /// Returns a pacer that delays refusals by `delay` (zero: not at all), `most` at once.
    pub fn new(delay: Duration, most: usize) -> Self {
        Self {
            delay,
            waiting: Arc::new(Semaphore::new(most)),
        }
    }

    /// Waits out the delay before a refusal is answered, or returns at once when the most
    /// refusals are already waiting.
    pub async fn wait(&self) {
        if self.delay.is_zero() {
            return;
        }
        if let Ok(_turn) = self.waiting.try_acquire() {
            tokio::time::sleep(self.delay).await;
        }
    }

    /// Keeps `refused` (a refused connection's socket and whatever it holds) for the delay
    /// and then drops it, which closes it; drops it at once when the most are held.
    pub fn hold<T: Send + 'static>(&self, refused: T) {
        if self.delay.is_zero() {
            return;
        }
        if let Ok(turn) = self.waiting.clone().try_acquire_owned() {
            let delay = self.delay;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                drop((refused, turn));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const DELAY: Duration = Duration::from_millis(300);
    /// Room for a loaded machine's scheduling on top of a wait.
    const SLACK: Duration = Duration::from_millis(250);

    #[tokio::test]
    async fn a_refusal_waits_the_delay_unless_the_most_are_waiting() {
        let pacer = RefusalDelay::new(DELAY, 1);
        let started = Instant::now();
        let first = tokio::spawn({
            let pacer = pacer.clone();
            async move { pacer.wait().await }
        });
        // Until the first has taken the one turn.
        while pacer.waiting.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        // The one turn is taken: the second refusal is answered at once.
        pacer.wait().await;
        assert!(started.elapsed() < DELAY, "{:?}", started.elapsed());
        first.await.expect("first refusal");
        assert!(started.elapsed() >= DELAY);
        // The turn is back.
        let again = Instant::now();
        pacer.wait().await;
        assert!(again.elapsed() >= DELAY && again.elapsed() < DELAY + SLACK);
    }

    #[tokio::test]
    async fn a_held_connection_is_dropped_after_the_delay() {
        let pacer = RefusalDelay::new(DELAY, 1);
        let (first, first_dropped) = tokio::sync::oneshot::channel::<()>();
        let (second, second_dropped) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        pacer.hold(first);
        pacer.hold(second);
        // Beyond the most held: dropped at once.
        assert!(second_dropped.await.is_err());
        assert!(started.elapsed() < DELAY);
        assert!(first_dropped.await.is_err());
        assert!(started.elapsed() >= DELAY && started.elapsed() < DELAY + SLACK);
    }

    #[tokio::test]
    async fn no_delay_answers_and_drops_at_once() {
        let pacer = RefusalDelay::new(Duration::ZERO, 1);
        let started = Instant::now();
        pacer.wait().await;
        let (refused, dropped) = tokio::sync::oneshot::channel::<()>();
        pacer.hold(refused);
        assert!(dropped.await.is_err());
        assert!(started.elapsed() < SLACK);
    }
}
