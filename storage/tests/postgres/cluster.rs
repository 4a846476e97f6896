//! A real PostgreSQL for tests: `VIGIL_TEST_DATABASE_URL` when set, else a
//! throw-away cluster (initdb + pg_ctl in a temp dir, a free port) started
//! once per test binary and stopped when it exits. No PostgreSQL means the
//! tests fail with a message saying how to get one; they never skip.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

const BIN_DIRS: &[&str] = &[
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
];

/// A running server the tests may stop and start again (the outage test).
pub(crate) struct Cluster {
    pub url: String,
    /// `None` for an external server given by URL.
    local: Option<Local>,
}

struct Local {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
/// Tests that stop the server hold this exclusively; others share it.
pub(crate) static SERVER: std::sync::RwLock<()> = std::sync::RwLock::new(());
static SCHEMA_NO: Mutex<u32> = Mutex::new(0);

pub(crate) fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        if let Ok(url) = std::env::var("VIGIL_TEST_DATABASE_URL") {
            return Cluster { url, local: None };
        }
        start_local()
    })
}

/// A fresh name for a schema (and role prefix) no other test uses.
pub(crate) fn unique_name(what: &str) -> String {
    let mut n = SCHEMA_NO.lock().unwrap();
    *n += 1;
    format!("t{}_{}_{}", std::process::id(), what, *n)
}

fn find_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("VIGIL_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    for d in BIN_DIRS {
        if Path::new(d).join("initdb").exists() {
            return PathBuf::from(d);
        }
    }
    panic!(
        "No PostgreSQL for the storage tests: set VIGIL_TEST_DATABASE_URL to a server \
         (the user needs CREATEROLE), or install PostgreSQL (apt-get install -y postgresql) \
         so that initdb and pg_ctl are in /usr/lib/postgresql/<version>/bin \
         (or set VIGIL_TEST_PG_BIN)."
    )
}

/// A port for a server a test is about to start, taken from below the
/// kernel's ephemeral range. A port found by binding to 0 comes from that
/// range, and between the check and the server's own bind an outgoing
/// connection of a test running beside it can take it as its local port:
/// the server then stops with "Address already in use". Below the range
/// only other servers compete, and the counter keeps this process's picks
/// apart.
pub(crate) fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(LOWEST);
    if span >= 1_000 {
        // A different start per process: test binaries that overlap (or a
        // server a previous binary left behind) rarely meet.
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let port = (LOWEST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(local_as_postgres: bool, program: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = if local_as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn start_local() -> Cluster {
    let bin = find_bin();
    let as_postgres = is_root();
    let dir = tempfile::Builder::new()
        .prefix("vigil-pg-")
        .tempdir()
        .expect("temp dir");
    if as_postgres {
        // initdb refuses to run as root; the cluster belongs to `postgres`.
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot chown the test cluster's dir to postgres");
    }
    let data = dir.path().join("data");
    let out = run(
        as_postgres,
        &bin.join("initdb"),
        &[
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
    );
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let local = Local {
        bin,
        data,
        port,
        as_postgres,
    };
    // Removed by the watchdog after the test process exits.
    let _ = dir.keep();
    local.start();
    local.watchdog();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    Cluster {
        url,
        local: Some(local),
    }
}

impl Local {
    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["-D", self.data.to_str().unwrap()];
        all.extend_from_slice(args);
        run(self.as_postgres, &self.bin.join("pg_ctl"), &all)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.data.parent().unwrap().display()
        );
        let log = self.data.parent().unwrap().join("log");
        let out = self.pg_ctl(&["-w", "-o", &opts, "-l", log.to_str().unwrap(), "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

impl Local {
    /// Statics are never dropped: a small shell process stops the cluster and
    /// removes its directory once this test process has exited.
    fn watchdog(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = format!(
            "{}{} -D {} -m immediate stop",
            if self.as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl.display(),
            self.data.display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.data.parent().unwrap().display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

impl Cluster {
    /// `pg_ctl stop -m immediate`: like a crash or a cut cable.
    pub(crate) fn stop(&self) {
        let local = self
            .local
            .as_ref()
            .expect("only a local test cluster can be stopped");
        let out = local.pg_ctl(&["-w", "-m", "immediate", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn start(&self) {
        self.local
            .as_ref()
            .expect("only a local test cluster can be started")
            .start();
    }

    pub(crate) fn is_local(&self) -> bool {
        self.local.is_some()
    }
}
