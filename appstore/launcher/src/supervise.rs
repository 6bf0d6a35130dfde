//! Watching waved and the app: their output, their exit, and the signals that stop them.

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::process::Child;
use tokio::signal::unix::{self, SignalKind};
use tokio::task::JoinHandle;

use crate::output::pipe;

/// How long children get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(8);
/// How long a child's remaining output may take to reach the log once it has ended.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// A running child whose output goes to the log.
pub struct Process {
    name: &'static str,
    child: Child,
    pipes: Vec<JoinHandle<()>>,
}

impl Process {
    /// Watches `child`, logging its output with `prefix`.
    pub fn new(name: &'static str, prefix: &'static str, mut child: Child) -> Self {
        let mut pipes = Vec::new();
        if let Some(out) = child.stdout.take() {
            pipes.push(tokio::spawn(pipe(prefix, out)));
        }
        if let Some(err) = child.stderr.take() {
            pipes.push(tokio::spawn(pipe(prefix, err)));
        }
        Process { name, child, pipes }
    }

    /// Sends SIGTERM, unless the child has already been reaped.
    fn terminate(&self) {
        let pid = self
            .child
            .id()
            .and_then(|id| Pid::from_raw(id.try_into().ok()?));
        if let Some(pid) = pid {
            // The child may have exited in the meantime: nothing left to stop then.
            let _ = kill_process(pid, Signal::TERM);
        }
    }

    /// Waits for the child, killing it after `grace`; then lets its last output through.
    async fn stop(mut self, grace: Duration) {
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            // Killing fails only when the child is already gone.
            let _ = self.child.kill().await;
        }
        for pipe in self.pipes {
            // A grandchild may still hold the pipe open: stop waiting for it after a while.
            let _ = tokio::time::timeout(DRAIN_GRACE, pipe).await;
        }
    }
}

/// waved and, once it is started, the app.
pub struct Children {
    waved: Process,
    app: Option<Process>,
}

/// Why supervision stopped waiting.
pub enum Interrupt {
    /// A child ended (or could not be waited for).
    Exited(&'static str, io::Result<ExitStatus>),
    /// The launcher was asked to stop.
    Signal(&'static str),
}

impl Children {
    /// Supervises `waved`.
    pub fn new(waved: Process) -> Self {
        Children { waved, app: None }
    }

    /// Supervises the app too.
    pub fn add_app(&mut self, app: Process) {
        self.app = Some(app);
    }

    /// Waits for the first child to end.
    async fn exited(&mut self) -> (&'static str, io::Result<ExitStatus>) {
        let waved = &mut self.waved;
        match &mut self.app {
            None => (waved.name, waved.child.wait().await),
            Some(app) => tokio::select! {
                status = waved.child.wait() => (waved.name, status),
                status = app.child.wait() => (app.name, status),
            },
        }
    }

    /// Kills every child at once.
    pub async fn kill(self) {
        let app = self.app.map(|app| app.stop(Duration::ZERO));
        tokio::join!(self.waved.stop(Duration::ZERO), optional(app));
    }

    /// Sends SIGTERM to every child, then kills those still running after 8 s.
    pub async fn terminate(self) {
        self.waved.terminate();
        if let Some(app) = &self.app {
            app.terminate();
        }
        let app = self.app.map(|app| app.stop(STOP_GRACE));
        tokio::join!(self.waved.stop(STOP_GRACE), optional(app));
    }
}

/// Runs `future` if there is one.
async fn optional(future: Option<impl Future<Output = ()>>) {
    if let Some(future) = future {
        future.await;
    }
}

/// The signals that stop the launcher: SIGTERM and SIGINT.
pub struct Signals {
    term: unix::Signal,
    int: unix::Signal,
}

impl Signals {
    /// Starts catching the signals.
    pub fn new() -> io::Result<Self> {
        Ok(Signals {
            term: unix::signal(SignalKind::terminate())?,
            int: unix::signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next signal; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Runs `work` unless a child ends or a signal arrives first.
pub async fn until<T>(
    work: impl Future<Output = T>,
    children: &mut Children,
    signals: &mut Signals,
) -> Result<T, Interrupt> {
    tokio::select! {
        done = work => Ok(done),
        (name, status) = children.exited() => Err(Interrupt::Exited(name, status)),
        signal = signals.recv() => Err(Interrupt::Signal(signal)),
    }
}

/// How a child ended, as in `exited with status 1`.
pub fn ended(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended: {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use std::time::Instant;
    use tokio::process::Command;

    fn sh(script: &str) -> Process {
        let child = Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Process::new("test", "[test] ", child)
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(ended(ExitStatus::from_raw(1 << 8)), "exited with status 1");
        assert_eq!(ended(ExitStatus::from_raw(0)), "exited with status 0");
        assert_eq!(ended(ExitStatus::from_raw(9)), "was killed by signal 9");
    }

    #[tokio::test]
    async fn first_exit_is_reported() {
        let mut children = Children::new(sh("exec sleep 30"));
        children.add_app(sh("exit 3"));
        let mut signals = Signals::new().unwrap();
        let work = std::future::pending::<()>();
        let Err(Interrupt::Exited(_, Ok(status))) = until(work, &mut children, &mut signals).await
        else {
            panic!("the app should have exited");
        };
        assert_eq!(status.code(), Some(3));
        let start = Instant::now();
        children.kill().await;
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn terminate_stops_children_that_obey() {
        let children = Children::new(sh("exec sleep 30"));
        let start = Instant::now();
        children.terminate().await;
        assert!(start.elapsed() < STOP_GRACE);
    }
}
