//! `vigil demo`, the README's first command: a fleet of all four kinds
//! connects, faults are printed as alarms, Ctrl-C stops everything cleanly
//! and keeps the data.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::free_port;

#[test]
fn the_demo_prints_alarms_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("demo.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["demo", "--devices", "40", "--fault-fraction", "0.5"])
        .args(["--first-fault-after-s", "1", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--mqtt-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-addr", &format!("127.0.0.1:{}", free_port())])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let read = || {
        let mut text = String::new();
        std::fs::File::open(&out_path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let wait_for = |what: &str, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !read().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the demo's output:\n{}",
                read()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("online 40/40 elevators, 8/8 rides", 60);
    wait_for("RAISED", 90);
    // Camera boxes and scales publish only incidents and finished fillings:
    // wait until at least one of each has been heard.
    let deadline = Instant::now() + Duration::from_secs(180);
    let heard = |text: &str, kind: &str| {
        text.lines()
            .filter(|l| l.starts_with("-- online"))
            .any(|l| {
                l.split(" | ")
                    .next()
                    .unwrap_or_default()
                    .split(", ")
                    // "1/4 scales (72 connected)": the last part carries the count.
                    .find(|part| part.contains(kind))
                    .and_then(|part| part.split('/').next())
                    .and_then(|n| n.rsplit(' ').next()?.parse::<u32>().ok())
                    .is_some_and(|n| n > 0)
            })
    };
    while !(heard(&read(), "camera boxes") && heard(&read(), "scales")) {
        assert!(
            Instant::now() < deadline,
            "no camera box or no scale heard:\n{}",
            read()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop on Ctrl-C:\n{}", read());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = read();
    assert!(status.success(), "exit {status}:\n{text}");
    let stopped = text
        .lines()
        .find(|l| l.starts_with("Stopped."))
        .unwrap_or_else(|| panic!("no closing line:\n{text}"));
    let accepted: u64 = stopped
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {stopped:?}"));
    assert!(accepted > 0, "{stopped}");
    // The store was closed cleanly: the WAL is flushed into files that a
    // new engine can open.
    assert!(dir.path().join("data/store").is_dir(), "{text}");
}
