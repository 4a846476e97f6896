//! DuckDB, the peer: the PyPI package in a virtual environment under the
//! cache directory (made by the full bench when missing, never by a test),
//! driven by a small Python loop over stdin that times each query inside
//! DuckDB (`execute`, which materialises the whole answer, as Vigil's
//! answer is collected in full).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::Context;
use serde_json::{Value, json};

/// The DuckDB release the figures in docs/benchmarks.md were taken with.
pub(super) const VERSION: &str = "2.0.1";

/// One command a line, one JSON answer a line.
const DRIVER: &str = r#"
import json, sys, time
import duckdb

def connect(setup, threads):
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    # Its progress bar (queries over 2 s) writes to stdout, our answer channel.
    con.execute("SET enable_progress_bar = false")
    for sql in setup:
        con.execute(sql)
    return con

def timed(con, sql, runs):
    times, rows = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        result = con.execute(sql)
        times.append((time.perf_counter() - start) * 1000.0)
        rows = len(result.fetchall())
    return times, rows

conns = {}
print(json.dumps({"version": duckdb.__version__}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    try:
        if "connect" in cmd:
            conns[cmd["connect"]] = connect(cmd["setup"], cmd["threads"])
            out = {}
        elif "cold" in cmd:
            con = connect(cmd["setup"], cmd["threads"])
            times, rows = timed(con, cmd["cold"], 1)
            con.close()
            out = {"ms": times, "rows": rows}
        else:
            con = conns[cmd["conn"]]
            if cmd.get("warmup"):
                con.execute(cmd["run"]).fetchall()
            times, rows = timed(con, cmd["run"], cmd["runs"])
            out = {"ms": times, "rows": rows}
    except Exception as e:
        out = {"error": str(e).splitlines()[0] if str(e) else type(e).__name__}
    print(json.dumps(out), flush=True)
"#;

/// Where the virtual environment lives.
pub(super) fn venv_dir(cache: &Path) -> PathBuf {
    cache.join(format!("duckdb-{VERSION}-venv"))
}

fn python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// Whether DuckDB can be imported from the environment.
pub(super) fn installed(venv: &Path) -> bool {
    Command::new(python(venv))
        .args(["-c", "import duckdb"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes the environment and installs DuckDB from PyPI.
pub(super) fn install(venv: &Path) -> anyhow::Result<()> {
    eprintln!(
        "Installing DuckDB {VERSION} from PyPI into {} …",
        venv.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .context("python3 -m venv (apt-get install -y python3-venv)")?;
    anyhow::ensure!(status.success(), "python3 -m venv failed");
    let status = Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", &format!("duckdb=={VERSION}")])
        .status()
        .context("pip install duckdb")?;
    anyhow::ensure!(status.success(), "pip install duckdb=={VERSION} failed");
    Ok(())
}

/// A running driver.
pub(super) struct Driver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub version: String,
    threads: usize,
}

/// One timed query.
pub(super) struct Timed {
    pub ms: Vec<f64>,
    pub rows: usize,
}

impl Driver {
    pub(super) fn start(venv: &Path, threads: usize) -> anyhow::Result<Driver> {
        let mut child = Command::new(python(venv))
            .args(["-c", DRIVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting DuckDB's Python")?;
        let stdin = child.stdin.take().context("driver stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("driver stdout")?);
        let mut driver = Driver {
            child,
            stdin,
            stdout,
            version: String::new(),
            threads,
        };
        let hello = driver.read()?;
        driver.version = hello["version"].as_str().unwrap_or("?").to_owned();
        Ok(driver)
    }

    fn read(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        anyhow::ensure!(!line.is_empty(), "DuckDB's driver stopped");
        Ok(serde_json::from_str(&line)?)
    }

    fn call(&mut self, cmd: Value) -> anyhow::Result<Value> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        let out = self.read()?;
        if let Some(e) = out["error"].as_str() {
            anyhow::bail!("DuckDB: {e}");
        }
        Ok(out)
    }

    /// A named connection with its views.
    pub(super) fn connect(&mut self, name: &str, setup: &[String]) -> anyhow::Result<()> {
        self.call(json!({"connect": name, "setup": setup, "threads": self.threads}))?;
        Ok(())
    }

    /// `runs` timed runs on a connection, after one untimed run if `warmup`.
    pub(super) fn run(
        &mut self,
        conn: &str,
        sql: &str,
        runs: usize,
        warmup: bool,
    ) -> anyhow::Result<Timed> {
        let out = self.call(json!({"conn": conn, "run": sql, "runs": runs, "warmup": warmup}))?;
        Ok(timed(&out))
    }

    /// One run on a fresh database (nothing cached by DuckDB).
    pub(super) fn cold(&mut self, setup: &[String], sql: &str) -> anyhow::Result<Timed> {
        let out = self.call(json!({"cold": sql, "setup": setup, "threads": self.threads}))?;
        Ok(timed(&out))
    }
}

fn timed(out: &Value) -> Timed {
    Timed {
        ms: out["ms"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default(),
        rows: out["rows"].as_u64().unwrap_or(0) as usize,
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The views an analyst's (or the admin's) DuckDB session reads: every
/// table the queries use over the same files, filtered to the grant
/// (`regions` prefixes) as Vigil's sealed scans filter it.
pub(super) fn setup(
    store: &Path,
    refs: &Path,
    alarm_columns: &[String],
    grant: Option<&str>,
) -> Vec<String> {
    let scope = |table: &str| match grant {
        Some(prefix) => format!("SELECT * FROM {table} WHERE starts_with(region, '{prefix}')"),
        None => format!("SELECT * FROM {table}"),
    };
    let files = |table: &str| {
        format!(
            "read_parquet('{}/tables/{table}/*.parquet')",
            store.display()
        )
    };
    let columns: Vec<String> = alarm_columns.iter().map(|c| format!("\"{c}\"")).collect();
    vec![
        format!(
            "CREATE VIEW elevator_readings AS {}",
            scope(&files("elevator_readings"))
        ),
        format!(
            "CREATE VIEW alarm_changes AS {}",
            scope(&files("alarm_changes"))
        ),
        format!(
            "CREATE VIEW equipment AS {}",
            scope(&format!(
                "read_parquet('{}/equipment.parquet')",
                refs.display()
            ))
        ),
        // Vigil's `alarms` view: the latest version of each alarm.
        format!(
            "CREATE VIEW alarms AS SELECT {} FROM (SELECT *, row_number() OVER \
             (PARTITION BY alarm_id ORDER BY version DESC) AS vigil_rank FROM alarm_changes) \
             WHERE vigil_rank = 1",
            columns.join(", ")
        ),
    ]
}
