//! `isobox serve` and `isobox worker` as child processes, and `curl` to talk to them.

use std::io::BufRead;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::isobox_cmd;

/// An `isobox` child process that has said where it listens, with its stderr lines.
pub struct IsoboxProcess {
    pub child: Child,
    /// Its base URL, from the line where it says where it listens.
    pub url: String,
    /// Its stderr, line by line (a thread reads the pipe).
    pub stderr: mpsc::Receiver<String>,
}

impl IsoboxProcess {
    /// Starts `isobox <cmd>` on ports of its own choosing (`REST_PORT=0`, `GRPC_PORT=0`, so two
    /// tests never race for one), with `vars` on top.
    pub fn start(cmd: &str, vars: &[(&str, &str)]) -> IsoboxProcess {
        IsoboxProcess::start_with(cmd, vars, |_| {})
    }

    /// `start`, with `adjust` applied to the command before it is spawned.
    pub fn start_with(
        cmd: &str,
        vars: &[(&str, &str)],
        adjust: impl FnOnce(&mut Command),
    ) -> IsoboxProcess {
        let mut command = isobox_cmd();
        command
            .arg(cmd)
            .env("REST_PORT", "0")
            .env("GRPC_PORT", "0")
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut command);
        // The node dies with the test that started it, even when the test fails before it
        // stops the node (a server left behind keeps refilling its docker pool).
        // SAFETY: prctl with integer arguments, between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                Ok(())
            });
        }
        let mut child = command.spawn().expect("isobox");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`isobox {cmd}` never said where it listens");
            };
            // `isobox listening on http://... (...)`, `isobox worker: ... /metrics on http://...`
            let said = ["listening on ", "/metrics on "]
                .iter()
                .find_map(|m| line.split_once(m).map(|(_, rest)| rest));
            let url = said.and_then(|rest| rest.split_whitespace().next());
            if let Some(url) = url.filter(|u| u.contains("://")) {
                let url = url.trim_end_matches(')').to_string();
                return IsoboxProcess {
                    child,
                    url,
                    stderr: rx,
                };
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process, which we have not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, waits for the exit and returns everything it wrote to stderr (until it is
    /// silent for 2 s).
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        let mut all = String::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            all.push_str(&l);
            all.push('\n');
        }
        (status, all)
    }

    /// The child and its URL; its stderr is drained from now on, so that it never blocks on a
    /// full pipe.
    pub fn detach(self) -> (Child, String) {
        let rx = self.stderr;
        std::thread::spawn(move || while rx.recv().is_ok() {});
        (self.child, self.url)
    }
}

/// `isobox <cmd>` (serve or worker) with its base URL: `IsoboxProcess::start`, detached.
pub fn spawn_node(cmd: &str, vars: &[(&str, &str)]) -> (Child, String) {
    IsoboxProcess::start(cmd, vars).detach()
}

/// `curl -s <args>`: what it wrote to stdout.
pub fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .arg("-s")
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
