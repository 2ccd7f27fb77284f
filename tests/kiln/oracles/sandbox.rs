//! Where the oracles run: a throwaway Debian root `scripts/oracle-root` builds (Debian 12 for every
//! oracle; Debian 13 for cloud-init 25.1's validator), entered through
//! `tests/oracles/job` in fresh mount, network, PID, UTS and IPC namespaces, each input on its own
//! overlay of the root (which itself never changes). A job is one driver over many inputs: the test
//! writes them to `io/in/<k>/`, the driver records what each program did in `io/out/<k>/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use super::userdata::File;
use crate::support::{repo_root, require_tool};

/// A job over hundreds of inputs takes well under a minute; this is a hang.
const JOB_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a timed-out job gets between SIGTERM and SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(10);
/// A batch is split into parallel jobs only when each gets at least this many inputs.
const MIN_CHUNK: usize = 40;
/// The file `scripts/oracle-root` writes last: a root without it is incomplete.
const ROOT_STAMP: &str = ".kiln-oracle-root";
/// Programs the jobs run outside the root (to enter it); `require_tool` knows their packages.
const HOST_TOOLS: &[&str] = &["bash", "unshare", "mount", "umount", "chroot", "timeout", "hostname"];

/// The roots `scripts/oracle-root` builds: one per Debian release whose own programs judge kiln's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Root {
    /// Bookworm with every oracle's programs (cloud-init 22.4.2).
    Debian12,
    /// Trixie with cloud-init 25.1.4 (and the files `scripts/release-facts` reads).
    Debian13,
}

impl Root {
    /// `scripts/oracle-root`'s argument, and the directory under target/oracle-root/.
    pub fn name(self) -> &'static str {
        match self {
            Root::Debian12 => "debian-12",
            Root::Debian13 => "debian-13",
        }
    }

    /// The variable that points at a root built elsewhere.
    fn override_var(self) -> &'static str {
        match self {
            Root::Debian12 => "KILN_ORACLE_ROOT",
            Root::Debian13 => "KILN_ORACLE_ROOT_DEBIAN_13",
        }
    }

    /// The root whose OpenSSH judges a release's sshd configuration: Debian 13's own 10.0 for debian-13;
    /// Debian 12's 9.2 for debian-12 and for Ubuntu (8.9 and 9.6, which take the same key exchanges from
    /// kiln: the post-quantum hybrid OpenSSH 8.5 added, and curve25519).
    pub fn for_openssh(release: kiln::model::Release) -> Root {
        match release {
            kiln::model::Release::Debian13 => Root::Debian13,
            _ => Root::Debian12,
        }
    }

    /// Where the root is (`KILN_ORACLE_ROOT` / `KILN_ORACLE_ROOT_DEBIAN_13` override the default place).
    pub fn path(self) -> PathBuf {
        std::env::var_os(self.override_var())
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/oracle-root").join(self.name()))
    }

    /// Checks once per root that it was built completely; panics with what to do when it was not.
    fn check(self) {
        static CHECKED: [OnceLock<()>; 2] = [const { OnceLock::new() }; 2];
        CHECKED[self as usize].get_or_init(|| {
            let root = self.path();
            assert!(
                root.join(ROOT_STAMP).is_file(),
                "the oracle root {} is missing or incomplete: build it with `scripts/oracle-root {}` (as root; \
                 needs mmdebstrap; `scripts/test-all` runs it before the tests)",
                root.display(),
                self.name()
            );
        });
    }
}

/// The Debian 12 oracle root, where every oracle but cloud-init's 25.1 validator runs.
pub fn root() -> PathBuf {
    Root::Debian12.path()
}

/// Checks once that the oracles can run here; panics with what to do when they cannot.
pub fn preflight() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        Root::Debian12.check();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "the oracles enter namespaces and mount overlays: run the tests as root");
        for tool in HOST_TOOLS {
            require_tool(tool);
        }
        assert!(
            Path::new("/dev/net/tun").exists(),
            "/dev/net/tun is missing: the WireGuard oracle's wireguard-go needs the kernel's TUN device"
        );
    });
}

/// How the driver sees its inputs: one fresh root per input, or all inputs in one root.
#[derive(Clone, Copy)]
pub enum Mode {
    Each,
    Once,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Each => "each",
            Mode::Once => "once",
        }
    }
}

/// One input's directory, as the test fills it.
pub struct Input {
    dir: PathBuf,
}

impl Input {
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) {
        std::fs::write(self.dir.join(name), bytes).expect("input file written");
    }

    /// Copies the directory `from` (its files, recursively; Python's byte-code caches left out) as `name`.
    pub fn copy_dir(&self, from: &Path, name: &str) {
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).expect("input directory");
            for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display())) {
                let entry = entry.expect("directory entry");
                let (path, target) = (entry.path(), to.join(entry.file_name()));
                if entry.file_name() == "__pycache__" {
                    continue;
                }
                if entry.file_type().expect("file type").is_dir() {
                    copy(&path, &target);
                } else {
                    std::fs::copy(&path, &target).unwrap_or_else(|e| panic!("copying {}: {e}", path.display()));
                }
            }
        }
        copy(from, &self.dir.join(name));
    }

    /// One item a line.
    pub fn lines<S: AsRef<str>>(&self, name: &str, lines: impl IntoIterator<Item = S>) {
        let text: String = lines.into_iter().map(|l| format!("{}\n", l.as_ref())).collect();
        self.write(name, text);
    }

    /// Write files for the driver's `put_files` (tests/oracles/lib.sh): `files.list`, NUL-separated
    /// records (path, octal mode, owner, defer, append, body file), and the bodies.
    pub fn files<'a>(&self, files: impl IntoIterator<Item = &'a File>) {
        let mut list = Vec::new();
        for (j, file) in files.into_iter().enumerate() {
            let body = format!("body-{j}");
            self.write(&body, &file.content);
            let fields = [
                file.path.clone(),
                format!("{:04o}", file.mode & 0o7777),
                file.owner.clone(),
                u8::from(file.defer).to_string(),
                u8::from(file.append).to_string(),
                body,
            ];
            for field in fields {
                list.extend_from_slice(field.as_bytes());
                list.push(0);
            }
        }
        self.write("files.list", list);
    }
}

/// What a program did, as the driver's `record` kept it.
#[derive(Debug, Clone)]
pub struct Record {
    pub rc: i32,
    pub out: String,
    pub err: String,
}

impl Record {
    /// Succeeded without a word on stderr.
    pub fn clean(&self) -> bool {
        self.rc == 0 && self.err.trim().is_empty()
    }

    /// `exit N: stderr` (or stdout when stderr is empty), for failure messages.
    pub fn said(&self) -> String {
        let text = if self.err.trim().is_empty() { &self.out } else { &self.err };
        format!("exit {}: {}", self.rc, text.trim())
    }
}

/// One input's records.
pub struct Outputs {
    _job: Arc<tempfile::TempDir>,
    dir: PathBuf,
}

impl Outputs {
    /// A record the driver must have written (its absence is a broken driver, not a verdict).
    pub fn record(&self, name: &str) -> Record {
        self.maybe_record(name)
            .unwrap_or_else(|| panic!("the oracle driver recorded no {name} in {}", self.dir.display()))
    }

    pub fn maybe_record(&self, name: &str) -> Option<Record> {
        let rc = self.text(&format!("{name}.rc"))?;
        Some(Record {
            rc: rc.trim().parse().unwrap_or_else(|_| panic!("{name}.rc holds {rc:?}")),
            out: self.text(&format!("{name}.out")).unwrap_or_default(),
            err: self.text(&format!("{name}.err")).unwrap_or_default(),
        })
    }

    pub fn text(&self, name: &str) -> Option<String> {
        let bytes = std::fs::read(self.dir.join(name)).ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub fn json(&self, name: &str) -> Value {
        let text = self.text(name).unwrap_or_else(|| panic!("the oracle driver wrote no {name}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON ({e}): {text}"))
    }
}

/// Runs `script` (a driver in tests/oracles/) over `keys` in the Debian 12 root, `fill` writing each
/// key's input; large batches are split into parallel jobs. Returns each key's records, in order.
pub fn run<K: Sync>(script: &str, mode: Mode, keys: &[K], fill: impl Fn(&Input, &K) + Sync) -> Vec<Outputs> {
    run_in(Root::Debian12, script, mode, keys, fill)
}

/// `run`, each key in the root `root_of` names for it (outputs in the keys' order).
pub fn run_per_root<K: Sync>(
    script: &str,
    mode: Mode,
    keys: &[K],
    root_of: impl Fn(&K) -> Root,
    fill: impl Fn(&Input, &K) + Sync,
) -> Vec<Outputs> {
    let mut outputs: Vec<Option<Outputs>> = keys.iter().map(|_| None).collect();
    for root in [Root::Debian12, Root::Debian13] {
        let mine: Vec<usize> = (0..keys.len()).filter(|&k| root_of(&keys[k]) == root).collect();
        let done = run_in(root, script, mode, &mine, |input, &k| fill(input, &keys[k]));
        for (k, output) in mine.into_iter().zip(done) {
            outputs[k] = Some(output);
        }
    }
    outputs.into_iter().map(|o| o.expect("every key ran in a root")).collect()
}

/// `run`, in the given root.
pub fn run_in<K: Sync>(
    root: Root,
    script: &str,
    mode: Mode,
    keys: &[K],
    fill: impl Fn(&Input, &K) + Sync,
) -> Vec<Outputs> {
    if keys.is_empty() {
        return Vec::new();
    }
    preflight();
    root.check();
    let chunks = (keys.len() / MIN_CHUNK).clamp(1, parallel_jobs());
    let size = keys.len().div_ceil(chunks);
    std::thread::scope(|scope| {
        let jobs: Vec<_> =
            keys.chunks(size).map(|chunk| scope.spawn(|| run_job(root, script, mode, chunk, &fill))).collect();
        jobs.into_iter().flat_map(|job| job.join().expect("oracle job thread")).collect()
    })
}

fn run_job<K>(root: Root, script: &str, mode: Mode, keys: &[K], fill: &(impl Fn(&Input, &K) + Sync)) -> Vec<Outputs> {
    let work = Arc::new(tempfile::tempdir().expect("temporary directory"));
    for dir in ["io/in", "io/out", "mnt"] {
        std::fs::create_dir_all(work.path().join(dir)).expect("job directory");
    }
    for (k, key) in keys.iter().enumerate() {
        let dir = work.path().join(format!("io/in/{k}"));
        std::fs::create_dir(&dir).expect("input directory");
        fill(&Input { dir }, key);
    }
    let _slot = Slot::acquire();
    let result = Command::new("timeout")
        .arg(format!("--kill-after={}", KILL_AFTER.as_secs()))
        .arg(JOB_TIMEOUT.as_secs().to_string())
        .args(["unshare", "--mount", "--net", "--pid", "--uts", "--ipc", "--fork", "--kill-child", "--", "bash"])
        .arg(repo_root().join("tests/oracles/job"))
        .arg(root.path())
        .arg(work.path())
        .arg(script)
        .arg(mode.arg())
        .output()
        .expect("the oracle job starts (timeout, unshare)");
    assert!(
        result.status.success(),
        "oracle job {script} failed ({}; a timeout after {} s exits 124):\n{}{}",
        result.status,
        JOB_TIMEOUT.as_secs(),
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    (0..keys.len()).map(|k| Outputs { _job: work.clone(), dir: work.path().join(format!("io/out/{k}")) }).collect()
}

/// Jobs running at once, across every oracle and test thread: one per core.
fn parallel_jobs() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(2)
}

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// A permit to run one job.
struct Slot;

impl Slot {
    fn acquire() -> Slot {
        let mut running = RUNNING.lock().expect("job slots");
        while *running >= parallel_jobs() {
            running = FREED.wait(running).expect("job slots");
        }
        *running += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *RUNNING.lock().expect("job slots") -= 1;
        FREED.notify_one();
    }
}
