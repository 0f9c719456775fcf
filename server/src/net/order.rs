//! Request order for appends on one connection.
//!
//! Kafka clients pipeline Produce requests and expect them stored in the
//! order they were sent (librdkafka with `max.in.flight > 1`, and every
//! idempotent producer). Handlers run concurrently, so a request that has to
//! wait (for a topic being auto-created, say) could be overtaken by a later
//! one that does not. Each Produce request on a connection therefore takes a
//! [`DispatchTurn`]: it waits for its turn before looking up its topics and
//! gives the turn up once its appends are queued on their partitions, which
//! serve appends in call order. Only dispatch is ordered; waiting for the
//! acknowledgements still overlaps.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Debug, Default)]
struct State {
    next_ticket: u64,
    /// The ticket whose turn it is.
    current: u64,
    /// Tickets given up before their turn came (a request that failed to
    /// decode, say); skipped when the turn reaches them.
    released_early: BTreeSet<u64>,
    waiting: Vec<Waker>,
}

/// The dispatch order of one connection: hands out turns in request order.
#[derive(Debug, Default)]
pub struct DispatchOrder(Rc<RefCell<State>>);

impl DispatchOrder {
    /// The next turn, in the order requests were read off the socket.
    pub fn turn(&self) -> DispatchTurn {
        let mut state = self.0.borrow_mut();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        DispatchTurn { order: self.0.clone(), ticket }
    }
}

/// One request's place in its connection's dispatch order; dropping it
/// gives the turn to the next request (whether or not it was awaited).
#[derive(Debug)]
pub struct DispatchTurn {
    order: Rc<RefCell<State>>,
    ticket: u64,
}

impl DispatchTurn {
    /// Resolves once every earlier turn of the connection has been given up.
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            let mut state = self.order.borrow_mut();
            if state.current == self.ticket {
                Poll::Ready(())
            } else {
                state.waiting.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for DispatchTurn {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.order.borrow_mut();
            state.released_early.insert(self.ticket);
            let mut advanced = false;
            loop {
                let current = state.current;
                if !state.released_early.remove(&current) {
                    break;
                }
                state.current += 1;
                advanced = true;
            }
            if !advanced {
                return;
            }
            std::mem::take(&mut state.waiting)
        };
        for waker in waiting {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + Clone + 'static) {
        pinion_engine::runtime::spawn_executor("order-test", glommio::Placement::Unbound, f)
            .expect("executor")
            .join()
            .expect("executor ran");
    }

    #[test]
    fn later_turns_wait_for_earlier_ones_even_when_they_start_first() {
        run(|| async {
            let order = DispatchOrder::default();
            let log = Rc::new(RefCell::new(Vec::new()));
            let first = order.turn();
            let second = order.turn();
            let third = order.turn();
            let mut tasks = Vec::new();
            for (name, turn, delay_ms) in [("third", third, 0), ("second", second, 5), ("first", first, 20)] {
                let log = log.clone();
                tasks.push(glommio::spawn_local(async move {
                    turn.wait().await;
                    glommio::timer::sleep(std::time::Duration::from_millis(delay_ms)).await;
                    log.borrow_mut().push(name);
                    drop(turn);
                }));
            }
            for task in tasks {
                task.await;
            }
            assert_eq!(*log.borrow(), ["first", "second", "third"]);
        });
    }

    #[test]
    fn a_turn_dropped_before_its_time_does_not_let_later_ones_jump_ahead() {
        run(|| async {
            let order = DispatchOrder::default();
            let log = Rc::new(RefCell::new(Vec::new()));
            let first = order.turn();
            let undecodable = order.turn();
            let third = order.turn();
            drop(undecodable);
            let third_log = log.clone();
            let third_task = glommio::spawn_local(async move {
                third.wait().await;
                third_log.borrow_mut().push("third");
            });
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            first.wait().await;
            log.borrow_mut().push("first");
            drop(first);
            third_task.await;
            assert_eq!(*log.borrow(), ["first", "third"]);
        });
    }
}
