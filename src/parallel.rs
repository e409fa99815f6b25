//! Work shared among the cores: a scoped thread per core takes the next item until none is left, so
//! uneven items (a large column, a long file) still keep every core busy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::Scope;

/// `f` applied to every item, on every core at once; the results come back in the items' order.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|scope| in_order(scope, items, &f, true).collect())
}

/// `f` applied to every item, on every core at once when `share` says so (else one by one on the
/// calling thread, as they are asked for). Each result comes back, in the items' order, as soon as it
/// and those before it are done, so the caller can use the first while the cores work on the
/// rest. Dropping the iterator lets the cores finish the items they hold and take no others.
pub(crate) fn in_order<'scope, T: Sync, R: Send + 'scope, F: Fn(&T) -> R + Sync>(
    scope: &'scope Scope<'scope, '_>,
    items: &'scope [T],
    f: &'scope F,
    share: bool,
) -> InOrder<'scope, T, R, F> {
    let workers = match share {
        true => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(items.len()),
        false => 1,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let results = (workers > 1).then(|| {
        let (send, results) = mpsc::channel();
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..workers {
            let (send, next, stop) = (send.clone(), next.clone(), stop.clone());
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else {
                        return;
                    };
                    if send.send((index, f(item))).is_err() {
                        return;
                    }
                }
            });
        }
        results
    });
    InOrder {
        items,
        f,
        results,
        early: BTreeMap::new(),
        next: 0,
        stop,
    }
}

/// The results of [`in_order`], in the items' order.
pub(crate) struct InOrder<'scope, T, R, F> {
    items: &'scope [T],
    f: &'scope F,
    /// The cores' results as they finish, in any order; none when the caller computes them.
    results: Option<mpsc::Receiver<(usize, R)>>,
    /// Results that finished before one ahead of them.
    early: BTreeMap<usize, R>,
    next: usize,
    stop: Arc<AtomicBool>,
}

impl<T, R, F: Fn(&T) -> R> Iterator for InOrder<'_, T, R, F> {
    type Item = R;

    fn next(&mut self) -> Option<R> {
        let item = self.items.get(self.next)?;
        let result = match &self.results {
            None => (self.f)(item),
            Some(results) => loop {
                if let Some(result) = self.early.remove(&self.next) {
                    break result;
                }
                // A worker that panicked sent nothing; the scope passes its panic on.
                let (index, result) = results.recv().ok()?;
                self.early.insert(index, result);
            },
        };
        self.next += 1;
        Some(result)
    }
}

impl<T, R, F> Drop for InOrder<'_, T, R, F> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Something made on a thread of its own while the caller goes on.
pub(crate) enum Alongside<T> {
    Making(std::thread::JoinHandle<T>),
    /// Made on the calling thread: no thread could be started.
    Made(T),
}

impl<T: Send + 'static> Alongside<T> {
    /// Starts `make` on a thread of its own; without a thread to spare, makes it here and now.
    pub(crate) fn start(make: impl FnOnce() -> T + Clone + Send + 'static) -> Self {
        match std::thread::Builder::new().spawn(make.clone()) {
            Ok(making) => Alongside::Making(making),
            Err(_) => Alongside::Made(make()),
        }
    }

    /// What was made, once it is; a panic while making it goes on here.
    pub(crate) fn wait(self) -> T {
        match self {
            Alongside::Making(making) => making.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Alongside::Made(made) => made,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_order_of_the_items() {
        let items: Vec<u64> = (0..1000).collect();
        // Uneven work: later items finish first.
        let squares = super::map(&items, |&n| {
            std::thread::sleep(std::time::Duration::from_micros(1000 - n));
            n * n
        });
        assert_eq!(squares, items.iter().map(|n| n * n).collect::<Vec<_>>());
        assert!(super::map(&[] as &[u8], |&b| b).is_empty());
    }

    #[test]
    fn each_result_comes_back_while_later_items_still_work() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};
        let first_taken = AtomicBool::new(false);
        // The second item finishes only once the first result was taken (or after 10 s), and says which.
        let work = |&n: &u32| match n {
            0 => true,
            _ => {
                let start = Instant::now();
                while !first_taken.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                first_taken.load(Ordering::SeqCst)
            }
        };
        for share in [true, false] {
            first_taken.store(false, Ordering::SeqCst);
            let results: Vec<bool> = std::thread::scope(|scope| {
                let mut results = super::in_order(scope, &[0, 1], &work, share);
                let first = results.next();
                first_taken.store(true, Ordering::SeqCst);
                first.into_iter().chain(results).collect()
            });
            assert_eq!(results, [true, true], "share: {share}");
        }
    }

    #[test]
    fn what_is_made_alongside_comes_back_and_so_does_its_panic() {
        let caller = std::thread::current().id();
        let made = super::Alongside::start(move || std::thread::current().id() != caller);
        assert!(made.wait(), "made on a thread of its own");
        let panicked = std::panic::catch_unwind(|| super::Alongside::start(|| panic!("broken")).wait());
        assert!(panicked.is_err());
    }

    #[test]
    fn dropping_the_results_stops_the_work() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let started = AtomicUsize::new(0);
        let work = |_: &u32| {
            started.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        let items = [0; 200];
        std::thread::scope(|scope| super::in_order(scope, &items, &work, true).next());
        // Each core finishes the item it holds, and at most takes one more as the first comes back.
        assert!(
            started.load(Ordering::SeqCst) < 20,
            "{} items started",
            started.load(Ordering::SeqCst)
        );
    }
}
