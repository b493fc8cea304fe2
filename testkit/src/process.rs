//! Child processes that never outlive the suite: each dies with the test
//! process (PR_SET_PDEATHSIG) and is killed when dropped.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// A running child process, logging to a file.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Starts `cmd`, sending stdout and stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to send
        // SIGKILL to this child when the parent thread exits.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc { child }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends `signal` and waits for the process to exit; its exit status
    /// (`None` if it had already exited).
    pub fn stop(&mut self, signal: i32) -> Option<std::process::ExitStatus> {
        if self.exited() {
            return None;
        }
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(libc::SIGKILL);
    }
}

/// A child process that fault injection stops and starts again with the
/// same command line. Its first run logs to `<name>.log`, restart N to
/// `<name>-N.log`.
pub struct Service {
    name: &'static str,
    command: Box<dyn Fn() -> Command + Send + Sync>,
    log_dir: PathBuf,
    /// The running process and how many times it was started.
    state: Mutex<(Option<Proc>, u32)>,
}

impl Service {
    pub fn start(
        name: &'static str,
        log_dir: &Path,
        command: impl Fn() -> Command + Send + Sync + 'static,
    ) -> Service {
        let service = Service {
            name,
            command: Box::new(command),
            log_dir: log_dir.into(),
            state: Mutex::new((None, 0)),
        };
        service.restart();
        service
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn stop(&self, signal: i32) {
        if let Some(mut proc) = self.state.lock().unwrap().0.take() {
            proc.stop(signal);
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.state.lock().unwrap().0.as_ref().map(Proc::id)
    }

    /// Starts the process again (after [`Service::stop`]).
    pub fn restart(&self) {
        let mut state = self.state.lock().unwrap();
        assert!(state.0.is_none(), "{} is still running", self.name);
        let log = match state.1 {
            0 => format!("{}.log", self.name),
            n => format!("{}-{n}.log", self.name),
        };
        state.0 = Some(Proc::spawn(
            self.name,
            (self.command)(),
            &self.log_dir.join(log),
        ));
        state.1 += 1;
    }
}

/// The user plus system CPU seconds process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name, utime and stime are the 12th
    // and 13th fields (14th and 15th of the whole line).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields[11].parse::<f64>().ok()? + fields[12].parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// A TCP port on 127.0.0.1 that is free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Runs `cmd` to completion; panics with its output if it fails.
pub fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
