//! The log's readers: a few threads of their own, each with its own
//! read-only connections, taking reads from one queue.
//!
//! Threads of their own rather than the runtime's blocking pool: a burst
//! of reads there starts a thread per read in flight (each with a fresh
//! allocator heap whose pages the kernel must fault in and zero), and
//! hands each read whichever pooled connection is free, so no
//! connection's prepared statements stay warm for long.
//!
//! Each thread keeps two connections. A short read (a stream, the head, a
//! page at the tail) goes to one that reads pages with `pread`: in WAL mode
//! a connection drops its page cache and memory map at the start of every
//! read transaction after another connection has written, so with appends
//! going on a map would be torn down and faulted in again for every read.
//! A scan (a long page of the whole log, `verify`) goes to one that maps
//! the file, where reading many pages in a row is much cheaper mapped.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::error::Error;

/// How much of the log file a scanning connection maps.
const SCAN_MMAP_BYTES: i64 = 1 << 34;
/// Prepared statements each connection keeps (stream reads with a few
/// limits, filtered pages, lookups).
const STATEMENTS_KEPT: usize = 64;

/// Which connection a read wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// A few pages: read with `pread`.
    Point,
    /// Many pages in a row: read through a memory map.
    Scan,
}

type Job = Box<dyn FnOnce(&mut Connections) + Send>;

/// A reader thread's connections, opened when first wanted.
pub(super) struct Connections {
    path: PathBuf,
    point: Option<Connection>,
    scan: Option<Connection>,
}

impl Connections {
    fn get(&mut self, access: Access) -> Result<&Connection, Error> {
        let slot = match access {
            Access::Point => &mut self.point,
            Access::Scan => &mut self.scan,
        };
        match slot {
            Some(conn) => Ok(conn),
            None => Ok(slot.insert(open(&self.path, access)?)),
        }
    }
}

fn open(path: &Path, access: Access) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
    if access == Access::Scan {
        conn.pragma_update(None, "mmap_size", SCAN_MMAP_BYTES)?;
    }
    Ok(conn)
}

/// The queue of reads and the threads that take them. Dropping it lets the
/// threads finish the reads queued and end.
pub(super) struct Readers {
    jobs: Sender<Job>,
}

impl Readers {
    /// `threads` reader threads (at least one) on the log at `path`.
    pub(super) fn start(path: &Path, threads: usize) -> Result<Self, Error> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            let mut conns = Connections {
                path: path.to_path_buf(),
                point: None,
                scan: None,
            };
            std::thread::Builder::new()
                .name(format!("eventlog-reader-{n}"))
                .spawn(move || {
                    while let Some(job) = next(&queue) {
                        // A read that panics answers `Closed` (its reply is
                        // dropped); the thread starts over with fresh
                        // connections and takes the next read.
                        let run = std::panic::AssertUnwindSafe(|| job(&mut conns));
                        if std::panic::catch_unwind(run).is_err() {
                            conns.point = None;
                            conns.scan = None;
                        }
                    }
                })
                .map_err(|e| Error::Backend(format!("starting a reader thread: {e}")))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` on a reader thread with the connection `access` wants.
    pub(super) async fn run<T, F>(&self, access: Access, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conns| {
            let out = conns.get(access).and_then(f);
            let _ = reply.send(out);
        });
        self.jobs.send(job).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

/// The next read, or `None` once the log is dropped. One thread at a time
/// waits on the queue; the others wait for the lock.
fn next(queue: &Mutex<Receiver<Job>>) -> Option<Job> {
    queue.lock().ok()?.recv().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (7);")
            .unwrap();
        (dir, path)
    }

    fn mapped(c: &Connection) -> Result<i64, Error> {
        Ok(c.query_row("PRAGMA mmap_size", [], |r| r.get(0))?)
    }

    #[tokio::test]
    async fn point_reads_use_pread_and_scans_a_map() {
        let (_dir, path) = log_file();
        let readers = Readers::start(&path, 2).unwrap();
        assert_eq!(readers.run(Access::Point, mapped).await.unwrap(), 0);
        assert!(readers.run(Access::Scan, mapped).await.unwrap() > 0);
    }

    #[tokio::test]
    async fn a_read_that_panics_answers_closed_and_the_thread_reads_on() {
        let (_dir, path) = log_file();
        let readers = Readers::start(&path, 1).unwrap();
        let failed = readers
            .run(Access::Point, |_| -> Result<(), Error> {
                panic!("a bug in a read")
            })
            .await;
        assert!(matches!(failed, Err(Error::Closed)), "{failed:?}");
        let x: i64 = readers
            .run(Access::Point, |c| {
                Ok(c.query_row("SELECT x FROM t", [], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert_eq!(x, 7);
    }

    #[tokio::test]
    async fn many_reads_at_once_share_the_threads() {
        let (_dir, path) = log_file();
        let readers = Arc::new(Readers::start(&path, 2).unwrap());
        let reads: Vec<_> = (0..64)
            .map(|_| {
                let readers = Arc::clone(&readers);
                tokio::spawn(async move {
                    readers
                        .run(Access::Point, |_| {
                            Ok(std::thread::current().name().map(str::to_owned))
                        })
                        .await
                })
            })
            .collect();
        let mut names = std::collections::HashSet::new();
        for r in reads {
            names.insert(r.await.unwrap().unwrap().unwrap());
        }
        assert!(names.len() <= 2, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("eventlog-reader-")));
    }
}
