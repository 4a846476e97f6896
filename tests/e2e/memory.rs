//! How the engine process is set up for memory: glibc's malloc arenas
//! capped (src/main.rs), unless the operator already set the cap.

use crate::harness::*;

/// `KEY=value` as the engine process's environment has it now (after it
/// started itself again, if it did).
fn environ(vigil: &Vigil, key: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{}/environ", vigil.child.id())).unwrap();
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

#[tokio::test]
async fn the_engine_runs_with_two_malloc_arenas_per_core_and_keeps_an_operators_cap() {
    // Ready on the ports its flags gave: the second start kept them.
    let vigil = Vigil::start().await;
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        environ(&vigil, "MALLOC_ARENA_MAX"),
        Some((2 * cores).to_string()),
        "the engine's log:\n{}",
        vigil.log()
    );

    let own = Vigil::start_with_env(&[("MALLOC_ARENA_MAX", "1")]).await;
    assert_eq!(environ(&own, "MALLOC_ARENA_MAX").as_deref(), Some("1"));
}
