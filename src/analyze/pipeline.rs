//! Streaming, ordered, parallel map: a producer thread feeds jobs, worker
//! threads process them, and the calling thread receives the results in the
//! producer's order.
//!
//! At most `window` jobs are between the producer and the consumer at any
//! time (queued, in work, or waiting to be put back in order), so memory
//! stays flat however many jobs there are, and a slow job holds back only
//! the window. Results come in the order of the jobs, whatever the number of
//! workers, which is what makes reports reproducible byte for byte.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{channel, sync_channel};

/// A job's result, or the job back with the message of a panic in `work`
/// (a bug, but one session must not stop the run or block the pipeline).
pub type Outcome<J, R> = Result<R, (J, String)>;

/// Runs `produce` on its own thread, `work` on `workers` threads (each with
/// its own state from `init`), and `consume` on the calling thread, in job
/// order. `produce` is handed a function that queues a job and returns false
/// once the consumer is gone.
pub fn ordered<J, R, S>(
    workers: usize,
    window: usize,
    produce: impl FnOnce(&mut dyn FnMut(J) -> bool) + Send,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, &J) -> R + Sync,
    mut consume: impl FnMut(Outcome<J, R>),
) where
    J: Send,
    R: Send,
{
    let window = window.max(1);
    let (token_tx, token_rx) = sync_channel::<()>(window);
    for _ in 0..window {
        let _ = token_tx.send(());
    }
    let (job_tx, job_rx) = channel::<(u64, J)>();
    let job_rx = Mutex::new(job_rx);
    let (result_tx, result_rx) = channel::<(u64, Outcome<J, R>)>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut seq = 0u64;
            let mut push = |job: J| {
                if token_rx.recv().is_err() {
                    return false;
                }
                let sent = job_tx.send((seq, job)).is_ok();
                seq += 1;
                sent
            };
            produce(&mut push);
        });
        for _ in 0..workers.max(1) {
            let result_tx = result_tx.clone();
            let job_rx = &job_rx;
            let work = &work;
            let init = &init;
            scope.spawn(move || {
                let mut state = init();
                loop {
                    // The lock is held only while waiting for the next job.
                    let next = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((seq, job)) = next else { break };
                    let outcome = match catch_unwind(AssertUnwindSafe(|| work(&mut state, &job))) {
                        Ok(result) => Ok(result),
                        Err(panic) => {
                            // The state may be half-updated: start afresh.
                            state = init();
                            Err((job, panic_message(panic.as_ref())))
                        }
                    };
                    if result_tx.send((seq, outcome)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(result_tx);
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        for (seq, outcome) in result_rx {
            pending.insert(seq, outcome);
            while let Some(outcome) = pending.remove(&next) {
                consume(outcome);
                next += 1;
                let _ = token_tx.send(());
            }
        }
    });
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_job_order() {
        for workers in [1, 2, 7] {
            let mut got = Vec::new();
            ordered(
                workers,
                3,
                |push| {
                    for i in 0..200u64 {
                        if !push(i) {
                            break;
                        }
                    }
                },
                || (),
                |_, &i| {
                    if i % 7 == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    i * 2
                },
                |r| got.push(r.ok().unwrap()),
            );
            assert_eq!(got, (0..200).map(|i| i * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_panicking_job_comes_back_as_an_error() {
        let mut got = Vec::new();
        ordered(
            2,
            2,
            |push| {
                for i in 0..10u64 {
                    push(i);
                }
            },
            || (),
            |_, &i| {
                assert!(i != 4, "job four");
                i
            },
            |r| got.push(r.map_err(|(j, m)| (j, m.contains("job four")))),
        );
        assert_eq!(got.len(), 10);
        assert_eq!(got[4], Err((4, true)));
        assert_eq!(got[5], Ok(5));
    }
}
