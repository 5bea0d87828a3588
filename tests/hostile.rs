//! Hostile programs: each one tries to hurt the host or escape the sandbox, and each test asserts
//! that it is contained with the right status and that the host is unharmed afterwards.
use crate::common::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use isobox_core::{ExecutionResult, RequestLimits};

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

/// Limits with separate wall and CPU budgets.
fn limits_full(timeout_ms: u64, cpu_ms: u64, memory_mb: u64) -> RequestLimits {
    RequestLimits {
        timeout_ms: Some(timeout_ms),
        cpu_time_ms: Some(cpu_ms),
        memory_mb: Some(memory_mb),
        ..Default::default()
    }
}

/// Runs a C program (compiled by gcc in the sandbox); panics if it does not compile.
fn run_c(code: &str, l: RequestLimits, args: &[&str]) -> ExecutionResult {
    let r = run_with("c", code, |r| {
        r.limits = Some(l);
        r.args = Some(args.iter().map(|s| s.to_string()).collect());
    });
    let c = r.compile.as_ref().expect("C has a compile step");
    assert_eq!(c.status, "ok", "compile failed: {}\n{r:?}", c.stderr);
    r
}

/// Runs a bash or python program with limits and args.
fn run_script(lang: &str, code: &str, l: RequestLimits, args: &[&str]) -> ExecutionResult {
    run_with(lang, code, |r| {
        r.limits = Some(l);
        r.args = Some(args.iter().map(|s| s.to_string()).collect());
    })
}

/// `key=value` lines of a program's stdout.
fn kv(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The value of `key` in `map`, or a panic that shows the whole output.
fn get<'a>(map: &'a BTreeMap<String, String>, key: &str, r: &ExecutionResult) -> &'a str {
    map.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no `{key}=` line in the output\n{r:?}"))
}

/// A token unique to this test process and moment, usable as a number (e.g. a `sleep` argument
/// that no other process on the host has on its command line).
fn unique_number(prefix: u32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}.{:06}{:09}", std::process::id(), nanos)
}

/// Asserts that no host process carries `needle` (a short grace period for the kernel to finish
/// tearing down; a process that escaped would still be there).
fn assert_no_host_procs(needle: &str) {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let left = procs_with(needle);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("processes of the sandbox survived the run: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f` while polling the host for processes carrying `needle`; returns `f`'s result and the
/// most such processes seen at once (proof that the token really marks the sandboxed tree).
fn watch_host_procs<T: Send>(needle: &str, f: impl FnOnce() -> T + Send) -> (T, usize) {
    std::thread::scope(|s| {
        let h = s.spawn(f);
        let mut most = 0;
        while !h.is_finished() {
            most = most.max(procs_with(needle).len());
            std::thread::sleep(Duration::from_millis(25));
        }
        (h.join().unwrap(), most)
    })
}

/// Run cgroups created by this test process that still exist.
fn leftover_cgroups() -> Vec<String> {
    let prefix = format!("run-{}-", std::process::id());
    let mut left = Vec::new();
    for base in [
        "/sys/fs/cgroup/memory/isobox",
        "/sys/fs/cgroup/pids/isobox",
        "/sys/fs/cgroup/cpu/isobox",
        "/sys/fs/cgroup/cpuacct/isobox",
        "/sys/fs/cgroup/cpu,cpuacct/isobox",
        "/sys/fs/cgroup/unified/isobox",
        "/sys/fs/cgroup/isobox",
    ] {
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&prefix) {
                    left.push(format!("{base}/{n}"));
                }
            }
        }
    }
    left
}

/// The host can still create processes (a fork bomb must not have eaten the host's pids).
fn assert_host_can_spawn() {
    for _ in 0..16 {
        let st = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .status()
            .expect("the host can still spawn processes");
        assert_eq!(st.code(), Some(7));
    }
}

fn file_hash(p: &str) -> Option<Vec<u8>> {
    std::fs::read(p).ok()
}

/// C prelude: `CHECK(name, expr)` prints `name=OK` or `name=<ERRNO NAME>`.
const C_PRELUDE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static void report(const char *name, long r, int e) {
    if (r < 0) printf("%s=%s\n", name, strerrorname_np(e));
    else printf("%s=OK\n", name);
    fflush(stdout);
}
#define CHECK(name, expr) do { errno = 0; long r_ = (long)(expr); report(name, r_, errno); } while (0)
"#;

fn c_src(body: &str) -> String {
    format!("{C_PRELUDE}\n{body}")
}

/// After a bomb: the run ended within its wall limit (plus the kill), none of the bomb's
/// processes is left on the host, nor its cgroup, and the host can still spawn processes.
fn assert_contained(r: &ExecutionResult, token: &str, wall_limit_ms: u64) {
    assert!(
        r.wall_time_ms <= wall_limit_ms + 1000,
        "run took too long: {r:?}"
    );
    assert_no_host_procs(token);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
    assert_host_can_spawn();
}

// ---------------------------------------------------------------------------------------------
// Process bombs.
// ---------------------------------------------------------------------------------------------

#[test]
fn fork_bomb_in_c_is_contained() {
    let token = unique_number(987_601);
    let code = c_src("int main(void) { for (;;) fork(); }");
    let t = Instant::now();
    let (r, most) = watch_host_procs(&token, || run_c(&code, limits(3000, 128), &[&token]));
    let elapsed = t.elapsed();
    assert!(
        most >= 10,
        "the bomb never forked ({most} processes seen): {r:?}"
    );
    // Whichever limit the bomb meets first ends it: the wall clock, a failed fork, or the
    // memory limit (every process's kernel memory is charged to the run's cgroup: 128 MiB
    // was reached first on a CI machine).
    assert!(
        matches!(
            r.status.as_str(),
            "timeout" | "runtime_error" | "ok" | "memory_limit"
        ),
        "{r:?}"
    );
    let compile_ms = r.compile.as_ref().map(|c| c.wall_time_ms).unwrap_or(0);
    assert!(
        elapsed < Duration::from_millis(compile_ms + 3000 + 3000),
        "execute took {elapsed:?}: {r:?}"
    );
    assert_contained(&r, &token, 3000);
}

#[test]
fn fork_bomb_in_bash_is_contained() {
    let token = unique_number(987_602);
    let t = Instant::now();
    let r = run_script("bash", ":(){ :|:& };:\n", limits(3000, 128), &[&token]);
    let elapsed = t.elapsed();
    assert!(
        matches!(
            r.status.as_str(),
            "timeout" | "runtime_error" | "ok" | "memory_limit"
        ),
        "{r:?}"
    );
    assert!(elapsed < Duration::from_secs(6), "execute took {elapsed:?}");
    assert_contained(&r, &token, 3000);
}

#[test]
fn fork_bomb_in_bash_with_a_live_main_is_contained() {
    // The main shell stays alive while the bomb rages, so the run ends by the wall clock and the
    // kill has to win against processes that fork as fast as the pids limit lets them.
    let token = unique_number(987_603);
    let t = Instant::now();
    let (r, most) = watch_host_procs(&token, || {
        run_script(
            "bash",
            ":(){ :|:& };:\nsleep 10\n",
            limits(3000, 128),
            &[&token],
        )
    });
    let elapsed = t.elapsed();
    assert!(
        most >= 10,
        "the bomb never forked ({most} processes seen): {r:?}"
    );
    assert_eq!(r.status, "timeout", "{r:?}");
    assert!(elapsed < Duration::from_secs(6), "execute took {elapsed:?}");
    assert_contained(&r, &token, 3000);
}

#[test]
fn thread_bomb_hits_the_pids_limit() {
    let code = c_src(
        r#"
#include <pthread.h>
static void *idle(void *a) { (void)a; for (;;) pause(); return NULL; }
int main(void) {
    for (int n = 0; n < 100000; n++) {
        pthread_t t;
        int e = pthread_create(&t, NULL, idle, NULL);
        if (e) { printf("threads=%d\nerr=%s\n", n, strerrorname_np(e)); return 0; }
    }
    puts("err=none");
    return 1;
}
"#,
    );
    let mut l = limits(4000, 256);
    l.max_processes = Some(32);
    let r = run_c(&code, l, &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    assert_eq!(get(&m, "err", &r), "EAGAIN", "{r:?}");
    let n: u32 = get(&m, "threads", &r).parse().unwrap();
    // The init and the main thread count too: at most 30 more fit under 32.
    assert!(
        (20..=30).contains(&n),
        "{n} threads under a 32-task limit: {r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Memory.
// ---------------------------------------------------------------------------------------------

#[test]
fn memory_bomb_is_memory_limit() {
    let code = c_src(
        r#"
int main(void) {
    for (long mib = 0;; mib++) {
        char *p = malloc(1 << 20);
        if (!p) { printf("malloc failed at %ld MiB\n", mib); return 3; }
        memset(p, 0x5a, 1 << 20);
    }
}
"#,
    );
    let r = run_c(&code, limits(5000, 64), &[]);
    assert_eq!(r.status, "memory_limit", "{r:?}");
    assert!(r.wall_time_ms < 5000, "{r:?}");
}

/// Node runs without `--max-old-space-size` (a V8 flag costs every start its built-in code
/// cache): the cgroup alone must end a JavaScript program that allocates without end.
#[test]
fn javascript_memory_bomb_is_memory_limit() {
    let code = "const a = []; for (;;) { a.push(new Array(1 << 20).fill(1.5)); }\n";
    let r = run_script("javascript", code, limits(10000, 128), &[]);
    assert_eq!(r.status, "memory_limit", "{r:?}");
    assert!(r.wall_time_ms < 10000, "{r:?}");
}

#[test]
fn huge_noreserve_reservation_succeeds() {
    let code = c_src(
        r#"
#include <sys/mman.h>
int main(void) {
    size_t len = 64UL << 30;
    char *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { printf("mmap=%s\n", strerrorname_np(errno)); return 1; }
    /* Commit and touch a little of it at both ends. */
    if (mprotect(p, 1 << 20, PROT_READ | PROT_WRITE) != 0) { printf("mprotect=%s\n", strerrorname_np(errno)); return 1; }
    if (mprotect(p + len - (1 << 20), 1 << 20, PROT_READ | PROT_WRITE) != 0) { printf("mprotect=%s\n", strerrorname_np(errno)); return 1; }
    memset(p, 1, 1 << 20);
    memset(p + len - (1 << 20), 2, 1 << 20);
    printf("mmap=OK\nsum=%d\n", p[0] + p[len - 1]);
    return 0;
}
"#,
    );
    let r = run_c(&code, limits(4000, 64), &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    assert_eq!(get(&m, "mmap", &r), "OK");
    assert_eq!(get(&m, "sum", &r), "3");
}

// ---------------------------------------------------------------------------------------------
// Time.
// ---------------------------------------------------------------------------------------------

#[test]
fn busy_loop_times_out() {
    let code = c_src("int main(void) { volatile unsigned long n = 0; for (;;) n++; }");
    let r = run_c(&code, limits(2000, 64), &[]);
    assert_eq!(r.status, "timeout", "{r:?}");
    assert!(r.wall_time_ms < 2000 + 1000, "{r:?}");
    assert!(r.cpu_time_ms >= 500, "a busy loop should burn CPU: {r:?}");
}

#[test]
fn spinning_threads_cpu_time_is_summed() {
    let code = c_src(
        r#"
#include <pthread.h>
static void *spin(void *a) { (void)a; volatile unsigned long n = 0; for (;;) n++; return NULL; }
int main(void) {
    pthread_t t[8];
    for (int i = 0; i < 8; i++) if (pthread_create(&t[i], NULL, spin, NULL)) return 2;
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    return 0;
}
"#,
    );
    let r = run_c(&code, limits_full(5000, 1000, 128), &[]);
    assert_eq!(r.status, "timeout", "{r:?}");
    assert!(r.cpu_time_ms >= 900, "{r:?}");
    // The CPU limit (summed over the 8 threads, 1 CPU of quota) fires long before the wall one.
    assert!(r.wall_time_ms < 4500, "the CPU limit did not fire: {r:?}");
}

#[test]
fn sleep_times_out_by_wall_clock() {
    let r = run_script("bash", "sleep 100\n", limits(1500, 64), &[]);
    assert_eq!(r.status, "timeout", "{r:?}");
    assert!(
        (1400..3000).contains(&r.wall_time_ms),
        "wall time should be the limit: {r:?}"
    );
    assert!(r.cpu_time_ms < 500, "sleeping costs no CPU: {r:?}");
}

#[test]
fn blocked_read_on_own_pipe_times_out() {
    let code = "import os\nr, w = os.pipe()\nprint('blocking', flush=True)\nos.read(r, 1)\nprint('unblocked')\n";
    let r = run_script("python", code, limits(1500, 128), &[]);
    assert_eq!(r.status, "timeout", "{r:?}");
    assert_eq!(r.stdout, "blocking\n", "{r:?}");
    assert!(r.wall_time_ms < 3000, "{r:?}");
    assert!(r.cpu_time_ms < 1000, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Processes that try to outlive the run.
// ---------------------------------------------------------------------------------------------

#[test]
fn setsid_daemon_dies_with_main() {
    let a = unique_number(987_654);
    let b = unique_number(987_655);
    // One daemon keeps the output pipes, one closes them (a careful daemon).
    let code = format!(
        "setsid sleep {a} &\nd1=$!\nsetsid sh -c 'exec sleep {b}' </dev/null >/dev/null 2>&1 &\nd2=$!\n\
         sleep 0.2\nkill -0 $d1 && kill -0 $d2 && grep -q {b} /proc/$d2/cmdline && echo started\n"
    );
    let t = Instant::now();
    let r = run_script("bash", &code, limits(4000, 64), &[]);
    let elapsed = t.elapsed();
    assert_eq!(r.status, "ok", "{r:?}");
    assert_eq!(r.stdout, "started\n", "{r:?}");
    assert!(
        r.wall_time_ms < 2000,
        "the run waited for the daemon: {r:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "execute took {elapsed:?}");
    assert_no_host_procs(&a);
    assert_no_host_procs(&b);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[test]
fn stopped_tree_is_killed_on_timeout() {
    let token = unique_number(987_656);
    // Children stop their own sleep and then themselves; main stops itself last.
    let code = r#"
for i in 1 2 3; do
  ( sleep "$1" & kill -STOP $!; kill -STOP $BASHPID; echo resumed ) &
done
sleep 0.3
echo stopping
kill -STOP $$
echo resumed
"#;
    let t = Instant::now();
    let (r, most) = watch_host_procs(&token, || {
        run_script("bash", code, limits(1000, 64), &[&token])
    });
    let elapsed = t.elapsed();
    // Main, 3 subshells and 3 sleeps.
    assert!(
        most >= 7,
        "the tree never existed ({most} processes seen): {r:?}"
    );
    assert_eq!(r.status, "timeout", "{r:?}");
    assert_eq!(r.stdout, "stopping\n", "{r:?}");
    assert!(r.wall_time_ms < 2500, "{r:?}");
    assert!(elapsed < Duration::from_secs(4), "execute took {elapsed:?}");
    assert_no_host_procs(&token);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

// ---------------------------------------------------------------------------------------------
// Output.
// ---------------------------------------------------------------------------------------------

#[test]
fn stdout_flood_is_cut_at_the_cap() {
    let code = c_src(
        r#"
static char buf[1 << 16];
int main(void) {
    memset(buf, 'x', sizeof buf);
    for (long i = 0; i < (1L << 30) / (long)sizeof buf; i++)
        if (write(1, buf, sizeof buf) < 0) return 1;
    return 0;
}
"#,
    );
    let mut l = limits(5000, 64);
    l.max_output_bytes = Some(65536);
    let r = run_c(&code, l, &[]);
    assert_eq!(r.status, "output_limit", "{r:?}");
    assert!(r.stdout_truncated, "{r:?}");
    assert_eq!(r.stdout.len(), 65536);
    assert!(r.stdout.bytes().all(|b| b == b'x'));
    assert!(
        r.wall_time_ms < 2000,
        "output limit should stop it quickly: {r:?}"
    );
}

#[test]
fn stderr_flood_is_cut_at_the_cap() {
    let mut l = limits(5000, 64);
    l.max_output_bytes = Some(10_000);
    let r = run_script("bash", "echo hi\nyes >&2\n", l, &[]);
    assert_eq!(r.status, "output_limit", "{r:?}");
    assert!(r.stderr_truncated, "{r:?}");
    assert!(!r.stdout_truncated, "{r:?}");
    assert_eq!(r.stdout, "hi\n");
    assert_eq!(r.stderr.len(), 10_000);
    assert!(r.stderr.starts_with("y\ny\n"));
    assert!(r.wall_time_ms < 2000, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Disk.
// ---------------------------------------------------------------------------------------------

#[test]
fn disk_fill_gets_enospc() {
    // Files of 8 MiB (under the 16 MiB file size limit) until the 64 MiB tmpfs is full; the same
    // for /dev/shm. tmpfs pages are charged to the run's memory cgroup, hence 256 MB.
    let code = c_src(
        r#"
static char buf[1 << 20];
static void fill(const char *dir, const char *key) {
    long total = 0;
    for (int f = 0; f < 1000; f++) {
        char name[256];
        snprintf(name, sizeof name, "%s/fill%d", dir, f);
        int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) { printf("%s=%s\n%s_mib=%ld\n", key, strerrorname_np(errno), key, total >> 20); return; }
        long in_file = 0;
        while (in_file < (8L << 20)) {
            ssize_t n = write(fd, buf, sizeof buf);
            if (n < 0) { printf("%s=%s\n%s_mib=%ld\n", key, strerrorname_np(errno), key, total >> 20); close(fd); return; }
            in_file += n; total += n;
        }
        close(fd);
    }
    printf("%s=none\n", key);
}
int main(void) {
    memset(buf, 'd', sizeof buf);
    fill("/tmp", "tmp");
    fill("/dev/shm", "shm");
    return 0;
}
"#,
    );
    let r = run_c(&code, limits(5000, 256), &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    assert_eq!(get(&m, "tmp", &r), "ENOSPC", "{r:?}");
    assert_eq!(get(&m, "shm", &r), "ENOSPC", "{r:?}");
    for k in ["tmp_mib", "shm_mib"] {
        let mib: u64 = get(&m, k, &r).parse().unwrap();
        assert!((40..=64).contains(&mib), "{k}={mib}: {r:?}");
    }
}

#[test]
fn a_million_empty_files_hit_the_inode_cap() {
    let code = c_src(
        r#"
int main(void) {
    for (long i = 0; i < 1000000; i++) {
        char n[32];
        snprintf(n, sizeof n, "e%ld", i);
        int fd = open(n, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) { printf("err=%s\ncreated=%ld\n", strerrorname_np(errno), i); return 0; }
        close(fd);
    }
    puts("err=none");
    return 1;
}
"#,
    );
    let r = run_c(&code, limits(5000, 128), &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    assert_eq!(get(&m, "err", &r), "ENOSPC", "{r:?}");
    let n: u64 = get(&m, "created", &r).parse().unwrap();
    assert!(n <= 16 * 1024, "{n} files despite the inode cap: {r:?}");
}

#[test]
fn file_over_the_size_limit_is_sigxfsz() {
    let code = c_src(
        r#"
static char buf[1 << 20];
int main(void) {
    int fd = open("big", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 2;
    for (int i = 0; i < 32; i++) {
        ssize_t n = write(fd, buf, sizeof buf);
        if (n < 0) { printf("write=%s at %d MiB\n", strerrorname_np(errno), i); return 3; }
    }
    puts("wrote 32 MiB");
    return 0;
}
"#,
    );
    let r = run_c(&code, limits(5000, 128), &[]);
    assert_eq!(r.status, "signal", "{r:?}");
    assert_eq!(r.signal.as_deref(), Some("SIGXFSZ"), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Network.
// ---------------------------------------------------------------------------------------------

#[test]
fn network_is_loopback_only() {
    let code = c_src(
        r#"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
int main(void) {
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(80) };
    inet_pton(AF_INET, "1.1.1.1", &a.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CHECK("tcp_socket", s);
    CHECK("tcp_connect", connect(s, (struct sockaddr *)&a, sizeof a));
    struct sockaddr_in d = { .sin_family = AF_INET, .sin_port = htons(53) };
    inet_pton(AF_INET, "8.8.8.8", &d.sin_addr);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK("udp_sendto", sendto(u, "x", 1, 0, (struct sockaddr *)&d, sizeof d));
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(80) };
    inet_pton(AF_INET6, "2606:4700:4700::1111", &a6.sin6_addr);
    int s6 = socket(AF_INET6, SOCK_STREAM, 0);
    if (s6 >= 0) CHECK("tcp6_connect", connect(s6, (struct sockaddr *)&a6, sizeof a6));
    else puts("tcp6_connect=NOSOCKET");
    CHECK("raw_socket", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    CHECK("packet_socket", socket(AF_PACKET, SOCK_RAW, 0));
    /* Loopback works. */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    CHECK("lo_bind", bind(l, (struct sockaddr *)&lo, sizeof lo));
    CHECK("lo_listen", listen(l, 1));
    socklen_t len = sizeof lo;
    getsockname(l, (struct sockaddr *)&lo, &len);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK("lo_connect", connect(c, (struct sockaddr *)&lo, sizeof lo));
    /* Interfaces. */
    FILE *f = fopen("/proc/net/dev", "r");
    if (!f) { printf("ifaces=%s\n", strerrorname_np(errno)); return 0; }
    char line[512], names[512] = "";
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (++n <= 2) continue;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = 0;
        char *p = line;
        while (*p == ' ') p++;
        if (names[0]) strcat(names, ",");
        strcat(names, p);
    }
    printf("ifaces=%s\n", names);
    return 0;
}
"#,
    );
    let r = run_c(&code, limits(5000, 128), &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    assert_eq!(get(&m, "tcp_socket", &r), "OK");
    assert_eq!(get(&m, "tcp_connect", &r), "ENETUNREACH", "{r:?}");
    assert_eq!(get(&m, "udp_sendto", &r), "ENETUNREACH", "{r:?}");
    assert_ne!(get(&m, "tcp6_connect", &r), "OK", "{r:?}");
    assert_eq!(get(&m, "raw_socket", &r), "EPERM", "{r:?}");
    assert_eq!(get(&m, "packet_socket", &r), "EPERM", "{r:?}");
    assert_eq!(get(&m, "lo_bind", &r), "OK", "{r:?}");
    assert_eq!(get(&m, "lo_connect", &r), "OK", "{r:?}");
    assert_eq!(get(&m, "ifaces", &r), "lo", "{r:?}");
}

#[test]
fn dns_lookup_fails() {
    let code = r#"
import socket
try:
    print('resolved', socket.getaddrinfo('example.com', 80))
except socket.gaierror as e:
    print('gaierror', e.errno)
"#;
    let r = run_script("python", code, limits(5000, 128), &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    assert!(r.stdout.starts_with("gaierror "), "{r:?}");
    assert!(r.wall_time_ms < 4000, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Kernel attack surface.
// ---------------------------------------------------------------------------------------------

#[test]
fn privileged_syscalls_are_refused() {
    let code = c_src(
        r#"
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
static int secret = 42;
int main(void) {
    CHECK("vsock", socket(40 /* AF_VSOCK */, SOCK_STREAM, 0));
    CHECK("alg", socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0));
    unsigned char params[120] = {0};
    CHECK("io_uring_setup", syscall(425, 8, params));
    CHECK("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* SESSION */, 1));
    CHECK("add_key", syscall(SYS_add_key, "user", "isobox", "x", 1, -2));
    CHECK("request_key", syscall(SYS_request_key, "user", "isobox", NULL, -2));
    CHECK("unshare_user", unshare(CLONE_NEWUSER));
    CHECK("unshare_net", unshare(CLONE_NEWNET));
    CHECK("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    CHECK("umount", umount2("/proc", MNT_DETACH));
    CHECK("chroot", chroot("/tmp"));
    int nsfd = open("/proc/self/ns/net", O_RDONLY);
    CHECK("setns", setns(nsfd, 0));
    CHECK("bpf", syscall(321, 0, NULL, 0));
    CHECK("userfaultfd", syscall(323, 0));
    CHECK("perf_event_open", syscall(298, NULL, 0, -1, -1, 0));
    CHECK("personality", personality(0x0400000 /* READ_IMPLIES_EXEC */));
    /* The classic container-escape and host-wide syscalls (harmless arguments throughout). */
    CHECK("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, O_RDONLY));
    CHECK("iopl", syscall(SYS_iopl, 3));
    CHECK("ioperm", syscall(SYS_ioperm, 0x80, 1, 1));
    CHECK("init_module", syscall(SYS_init_module, NULL, 0, ""));
    CHECK("finit_module", syscall(SYS_finit_module, -1, "", 0));
    CHECK("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    CHECK("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
    CHECK("swapon", syscall(SYS_swapon, "/tmp/nothing", 0));
    CHECK("acct", syscall(SYS_acct, NULL));
    CHECK("sethostname", sethostname("pwned", 5));
    struct timespec ts = { 0, 0 };
    CHECK("clock_settime", clock_settime(CLOCK_REALTIME, &ts));
    /* clone with namespace flags (a child, if one appears, leaves at once). */
    errno = 0;
    long cu = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (cu == 0) _exit(0);
    report("clone_newuser", cu, errno);
    if (cu > 0) waitpid(cu, NULL, 0);
    errno = 0;
    long cn = syscall(SYS_clone, CLONE_NEWNET | CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
    if (cn == 0) _exit(0);
    report("clone_newnet", cn, errno);
    if (cn > 0) waitpid(cn, NULL, 0);
    /* clone3 must be ENOSYS (a child, if one appears, leaves at once). */
    uint64_t cl[8] = {0};
    cl[4] = SIGCHLD;
    errno = 0;
    long c3 = syscall(435, cl, sizeof cl);
    if (c3 == 0) _exit(0);
    report("clone3", c3, errno);
    if (c3 > 0) waitpid(c3, NULL, 0);
    /* A plain fork still works. */
    pid_t victim = fork();
    if (victim == 0) { for (;;) pause(); }
    CHECK("fork", victim);
    /* A sibling tries to trace the victim. */
    pid_t tracer = fork();
    if (tracer == 0) {
        long r = ptrace(PTRACE_ATTACH, victim, 0, 0);
        _exit(r < 0 ? errno : 0);
    }
    int st = 0;
    waitpid(tracer, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) puts("ptrace_attach_sibling=OK");
    else if (WIFEXITED(st)) printf("ptrace_attach_sibling=%s\n", strerrorname_np(WEXITSTATUS(st)));
    else puts("ptrace_attach_sibling=KILLED");
    CHECK("ptrace_attach_child", ptrace(PTRACE_ATTACH, victim, 0, 0));
    CHECK("ptrace_traceme", ptrace(PTRACE_TRACEME, 0, 0, 0));
    int out = 0;
    struct iovec local = { &out, sizeof out }, remote = { &secret, sizeof secret };
    CHECK("process_vm_readv", process_vm_readv(victim, &local, 1, &remote, 1, 0));
    CHECK("process_vm_writev", process_vm_writev(victim, &local, 1, &remote, 1, 0));
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    return 0;
}
"#,
    );
    let r = run_c(&code, limits(5000, 128), &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    assert_eq!(get(&m, "fork", &r), "OK", "{r:?}");
    assert_eq!(get(&m, "vsock", &r), "EAFNOSUPPORT", "{r:?}");
    assert_eq!(get(&m, "alg", &r), "EAFNOSUPPORT", "{r:?}");
    assert_eq!(get(&m, "clone3", &r), "ENOSYS", "{r:?}");
    for k in [
        "io_uring_setup",
        "keyctl",
        "add_key",
        "request_key",
        "unshare_user",
        "unshare_net",
        "mount",
        "umount",
        "chroot",
        "setns",
        "bpf",
        "userfaultfd",
        "perf_event_open",
        "personality",
        "open_by_handle_at",
        "iopl",
        "ioperm",
        "init_module",
        "finit_module",
        "kexec_load",
        "reboot",
        "swapon",
        "acct",
        "sethostname",
        "clock_settime",
        "clone_newuser",
        "clone_newnet",
        "ptrace_attach_sibling",
        "ptrace_attach_child",
        "ptrace_traceme",
        "process_vm_readv",
        "process_vm_writev",
    ] {
        assert_eq!(get(&m, k, &r), "EPERM", "{k}: {r:?}");
    }
}

#[test]
fn host_file_system_is_read_only_and_fds_are_clean() {
    let code = c_src(
        r#"
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <termios.h>
int main(void) {
    CHECK("usr_bin_create", open("/usr/bin/isobox-x", O_WRONLY | O_CREAT, 0755));
    CHECK("etc_passwd_write", open("/etc/passwd", O_WRONLY | O_APPEND));
    CHECK("etc_create", open("/etc/isobox-x", O_WRONLY | O_CREAT, 0644));
    CHECK("root_create", open("/x", O_WRONLY | O_CREAT, 0644));
    CHECK("root_mkdir", mkdir("/isobox-dir", 0755));
    CHECK("usr_rename", rename("/usr/bin/env", "/usr/bin/env2"));
    CHECK("proc_exe_rdwr", open("/proc/self/exe", O_RDWR));
    CHECK("sysrq_write", open("/proc/sysrq-trigger", O_WRONLY));
    CHECK("core_pattern_write", open("/proc/sys/kernel/core_pattern", O_WRONLY));
    CHECK("dev_create", open("/dev/isobox-x", O_WRONLY | O_CREAT, 0644));
    CHECK("dev_tty", open("/dev/tty", O_RDWR));
    CHECK("sys_exists", access("/sys", F_OK));
    CHECK("sys_write", open("/sys/kernel/mm/transparent_hugepage/enabled", O_WRONLY));
    CHECK("mknod_dev", mknod("/tmp/mem", S_IFCHR | 0666, makedev(1, 1)));
    char c = 'x';
    CHECK("tiocsti", ioctl(1, TIOCSTI, &c));
    CHECK("tiocsti_hibits", syscall(16 /* ioctl */, 1, 0xffffffff00000000UL | TIOCSTI, &c));
    CHECK("setsid_again", setsid());
    int tfd = open("/tmp/ok", O_WRONLY | O_CREAT, 0644);
    report("tmp_create", tfd, errno);
    if (tfd >= 0) close(tfd);
    DIR *d = opendir("/proc/self/fd");
    if (!d) { printf("fds=%s\n", strerrorname_np(errno)); return 0; }
    char list[1024] = "";
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (atoi(e->d_name) == dirfd(d)) continue;
        if (list[0]) strcat(list, ",");
        strcat(list, e->d_name);
    }
    closedir(d);
    printf("fds=%s\n", list);
    return 0;
}
"#,
    );
    let r = run_c(&code, limits(5000, 128), &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    for k in [
        "usr_bin_create",
        "etc_passwd_write",
        "etc_create",
        "root_create",
        "root_mkdir",
        "usr_rename",
        "dev_create",
    ] {
        let v = get(&m, k, &r);
        assert!(v == "EROFS" || v == "EACCES", "{k}={v}: {r:?}");
    }
    for k in [
        "proc_exe_rdwr",
        "sysrq_write",
        "core_pattern_write",
        "dev_tty",
    ] {
        assert_ne!(get(&m, k, &r), "OK", "{k}: {r:?}");
    }
    if on_docker() {
        // Docker always mounts /sys (read-only; the runner reads its cgroup counters there).
        let w = get(&m, "sys_write", &r);
        assert!(w == "EROFS" || w == "EACCES", "sys_write={w}: {r:?}");
    } else {
        assert_eq!(get(&m, "sys_exists", &r), "ENOENT", "{r:?}");
    }
    assert_eq!(get(&m, "mknod_dev", &r), "EPERM", "{r:?}");
    assert_eq!(get(&m, "tiocsti", &r), "EPERM", "{r:?}");
    assert_eq!(get(&m, "tiocsti_hibits", &r), "EPERM", "{r:?}");
    // Already a session leader: setsid fails, so there is no way back to a controlling tty.
    assert_eq!(get(&m, "setsid_again", &r), "EPERM", "{r:?}");
    assert_eq!(get(&m, "tmp_create", &r), "OK", "{r:?}");
    assert_eq!(get(&m, "fds", &r), "0,1,2", "{r:?}");
    assert!(!Path::new("/usr/bin/isobox-x").exists());
    assert!(!Path::new("/x").exists());
    assert!(!Path::new("/isobox-dir").exists());
}

/// x86_64's 32-bit ABI (`int 0x80`); the filter's unit tests cover AArch32 on arm64.
#[cfg(target_arch = "x86_64")]
#[test]
fn i386_syscall_is_killed_with_sigsys() {
    let code = r#"
#include <stdio.h>
int main(void) {
    long r;
    puts("before");
    fflush(stdout);
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    printf("survived getpid=%ld\n", r);
    return 0;
}
"#;
    let r = run_c(code, limits(3000, 64), &[]);
    assert_eq!(r.status, "signal", "{r:?}");
    assert_eq!(r.signal.as_deref(), Some("SIGSYS"), "{r:?}");
    assert_eq!(r.stdout, "before\n", "{r:?}");
}

#[test]
fn symlinks_to_host_files_are_harmless() {
    let token = unique_number(987_657);
    let shadow_before = file_hash("/etc/shadow");
    let passwd_before = file_hash("/etc/passwd");
    let code = format!(
        r#"
ln -s /etc/shadow shadow
ln -s /etc/passwd passwd
ln -s / root
ln -s /root home
mkdir -p out && ln -s /etc out/etc
cat shadow >/dev/null 2>&1 && echo read_shadow=OK || echo read_shadow=FAIL
echo pwned >> shadow 2>/dev/null && echo write_shadow=OK || echo write_shadow=FAIL
echo pwned >> passwd 2>/dev/null && echo write_passwd=OK || echo write_passwd=FAIL
echo pwned > root/isobox-pwned-{token} 2>/dev/null && echo write_root=OK || echo write_root=FAIL
echo pwned > home/isobox-pwned-{token} 2>/dev/null && echo write_home=OK || echo write_home=FAIL
echo pwned > out/etc/isobox-pwned-{token} 2>/dev/null && echo write_etc=OK || echo write_etc=FAIL
ls / | tr '\n' ' ' | sed 's/^/root_listing=/'; echo
"#
    );
    let r = run_script("bash", &code, limits(5000, 64), &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    for k in [
        "read_shadow",
        "write_shadow",
        "write_passwd",
        "write_root",
        "write_home",
        "write_etc",
    ] {
        assert_eq!(get(&m, k, &r), "FAIL", "{k}: {r:?}");
    }
    let listing = get(&m, "root_listing", &r);
    assert!(
        !listing.split(' ').any(|e| e == "root" || e == "home"),
        "host dirs visible: {listing}"
    );
    assert_eq!(
        file_hash("/etc/shadow"),
        shadow_before,
        "host /etc/shadow changed"
    );
    assert_eq!(
        file_hash("/etc/passwd"),
        passwd_before,
        "host /etc/passwd changed"
    );
    for p in [
        format!("/isobox-pwned-{token}"),
        format!("/root/isobox-pwned-{token}"),
        format!("/etc/isobox-pwned-{token}"),
    ] {
        assert!(!Path::new(&p).exists(), "{p} was created on the host");
    }
    // The new root is mounted only inside the sandbox's mount namespace.
    let mount_point: Vec<_> = std::fs::read_dir("/run/isobox/root")
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        mount_point.is_empty(),
        "the host mount point is not empty: {mount_point:?}"
    );
}

#[test]
fn abort_is_sigabrt_without_a_core_file() {
    let cwd = std::env::current_dir().unwrap();
    let cores = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("core"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = cores(&cwd);
    let code = c_src(
        r#"
#include <sys/resource.h>
int main(void) {
    struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
    CHECK("raise_core_limit", setrlimit(RLIMIT_CORE, &rl));
    abort();
}
"#,
    );
    let r = run_c(&code, limits(3000, 64), &[]);
    assert_eq!(r.status, "signal", "{r:?}");
    assert_eq!(r.signal.as_deref(), Some("SIGABRT"), "{r:?}");
    assert_eq!(
        kv(&r.stdout).get("raise_core_limit").map(String::as_str),
        Some("EPERM")
    );
    assert_eq!(
        cores(&cwd),
        before,
        "a core file appeared in {}",
        cwd.display()
    );
    assert!(cores(Path::new("/run/isobox/root")).is_empty());
}

#[test]
fn no_privilege_escalation_through_setuid() {
    let code = r#"
grep -E '^[^ ]+ /tmp ' /proc/self/mounts | grep -q nosuid && echo tmp_nosuid=yes || echo tmp_nosuid=no
grep -E '^[^ ]+ / ' /proc/self/mounts | grep -q nosuid && echo root_nosuid=yes || echo root_nosuid=no
grep -E '^[^ ]+ /usr ' /proc/self/mounts | grep -q nosuid && echo usr_nosuid=yes || echo usr_nosuid=no
echo "suid_files=$(find / -xdev -type f -perm /6000 2>/dev/null | wc -l)"
echo "nnp=$(awk '/^NoNewPrivs:/ {print $2}' /proc/self/status)"
echo "seccomp=$(awk '/^Seccomp:/ {print $2}' /proc/self/status)"
echo "capeff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)"
echo "capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)"
cp /usr/bin/id ./id && chmod 4755 ./id && echo "suid_id=$(./id -u)"
echo "uid=$(id -u) gid=$(id -g)"
echo "groups=$(id -G)"
"#;
    let r = run_script("bash", code, limits(5000, 64), &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    assert_eq!(get(&m, "tmp_nosuid", &r), "yes", "{r:?}");
    if on_docker() {
        // Docker mounts the image root without nosuid; the image has no setuid or setgid
        // file at all (`isobox image build` strips the bits).
        assert_eq!(get(&m, "suid_files", &r), "0", "{r:?}");
    } else {
        assert_eq!(get(&m, "root_nosuid", &r), "yes", "{r:?}");
        assert_eq!(get(&m, "usr_nosuid", &r), "yes", "{r:?}");
    }
    assert_eq!(get(&m, "nnp", &r), "1", "{r:?}");
    assert_eq!(get(&m, "seccomp", &r), "2", "{r:?}");
    assert_eq!(get(&m, "capeff", &r), "0000000000000000", "{r:?}");
    assert_eq!(get(&m, "capbnd", &r), "0000000000000000", "{r:?}");
    // Each run has its own unprivileged uid (= gid) from the sandbox range; the setuid copy
    // of `id` still runs as that uid.
    let uid: u32 = get(&m, "suid_id", &r).parse().expect("numeric uid");
    let range = if on_docker() {
        isobox_sandbox::docker::UID_RANGE
    } else {
        60000..61000
    };
    assert!(range.contains(&uid), "{r:?}");
    assert!(
        r.stdout.contains(&format!("uid={uid} gid={uid}\n")),
        "{r:?}"
    );
    assert_eq!(get(&m, "groups", &r), uid.to_string(), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Isolation between runs.
// ---------------------------------------------------------------------------------------------

#[test]
fn parallel_runs_cannot_see_each_other() {
    let code = r#"
import os, socket, sys, time
tag = sys.argv[1]
open(f'/tmp/marker-{tag}', 'w').write(tag)
open(f'/dev/shm/marker-{tag}', 'w').write(tag)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.bind('\0isobox-test')
    s.listen(1)
    print('bind=OK')
except OSError as e:
    print('bind=' + (os.strerror(e.errno) if e.errno else str(e)))
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
# IPC_CREAT | IPC_EXCL | 0600 with the same key in both runs.
shm_id = libc.shmget(0x1505B0C5, 4096, 0o1000 | 0o2000 | 0o600)
print('sysv_shm=' + ('OK' if shm_id >= 0 else os.strerror(ctypes.get_errno())))
print('t_bound=%.6f' % time.time(), flush=True)
time.sleep(1.2)
print('tmp=' + ','.join(sorted(os.listdir('/tmp'))))
print('shm=' + ','.join(sorted(os.listdir('/dev/shm'))))
procs = []
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            cmd = open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\0', b' ').decode().strip()
        except OSError as e:
            cmd = 'unreadable'
        procs.append(f'{p}:{cmd}')
print('procs=' + ';'.join(sorted(procs)))
print('self=%d' % os.getpid())
print('hostname=' + socket.gethostname())
print('t_end=%.6f' % time.time())
"#;
    let go = |tag: &str| run_script("python", code, limits(5000, 128), &[tag]);
    let (a, b) = std::thread::scope(|s| {
        let ha = s.spawn(|| go("A"));
        let hb = s.spawn(|| go("B"));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    let check = |r: &ExecutionResult, me: &str, other: &str| {
        assert_eq!(r.status, "ok", "{r:?}");
        let m = kv(&r.stdout);
        assert_eq!(get(&m, "bind", r), "OK", "{me}: {r:?}");
        assert_eq!(get(&m, "sysv_shm", r), "OK", "{me}: {r:?}");
        let tmp = get(&m, "tmp", r);
        assert!(tmp.split(',').any(|f| f == format!("marker-{me}")), "{r:?}");
        assert!(
            !tmp.contains(&format!("marker-{other}")),
            "{me} sees {other}'s /tmp: {r:?}"
        );
        assert_eq!(get(&m, "shm", r), format!("marker-{me}"), "{r:?}");
        let own = get(&m, "self", r);
        let procs = get(&m, "procs", r);
        assert!(!procs.is_empty(), "{r:?}");
        for p in procs.split(';') {
            let (pid, cmd) = p.split_once(':').unwrap();
            if on_docker()
                && pid == "1"
                && cmd == isobox_sandbox::docker::runner_command(&[]).join(" ")
            {
                // The container's own runner (PID 1): not dumpable, unkillable from inside.
                continue;
            }
            assert!(
                cmd.ends_with(&format!("main.py {me}")),
                "{me} sees a foreign process {pid} `{cmd}`: {r:?}"
            );
        }
        assert!(procs.split(';').any(|p| p.split(':').next() == Some(own)));
        assert_eq!(get(&m, "hostname", r), "isobox", "{r:?}");
        let t_bound: f64 = get(&m, "t_bound", r).parse().unwrap();
        let t_end: f64 = get(&m, "t_end", r).parse().unwrap();
        (t_bound, t_end)
    };
    let (a0, a1) = check(&a, "A", "B");
    let (b0, b1) = check(&b, "B", "A");
    // The segments lived and died in the runs' IPC namespaces.
    let key = 0x1505B0C5u32.to_string();
    let host_shm = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    assert!(
        !host_shm
            .lines()
            .any(|l| l.split_whitespace().next() == Some(key.as_str())),
        "a sandbox SysV segment is visible on the host"
    );
    // Both held the same abstract socket name at the same time.
    assert!(
        a0.max(b0) < a1.min(b1),
        "the runs did not overlap: A {a0}..{a1}, B {b0}..{b1}"
    );
}

/// Kills and reaps a host child on drop.
struct HostChild(std::process::Child);

impl Drop for HostChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_cannot_reach_host_processes_of_the_same_uid() {
    use std::os::unix::process::CommandExt;
    let token = unique_number(987_658);
    let mut host = HostChild(
        std::process::Command::new("sleep")
            .arg(&token)
            .uid(61500)
            .gid(61500)
            .spawn()
            .expect("spawn a host process as the sandbox uid"),
    );
    let host_pid = host.0.id().to_string();
    let code = r#"
echo "uid=$(id -u)"
kill -9 "$1" 2>/dev/null && echo direct=OK || echo direct=FAIL
kill -9 -1 2>/dev/null; echo all=$?
pkill -9 -f sleep 2>/dev/null; true
echo survived=yes
"#;
    // A backend whose only sandbox uid is 61500, so the host process above shares it.
    let backend = isobox_sandbox::NativeBackend::new(isobox_sandbox::NativeConfig {
        uid: 61500,
        gid: 61500,
        uid_count: 1,
        ..Default::default()
    })
    .unwrap();
    let exec = isobox_core::Executor::new(
        std::sync::Arc::new(backend),
        isobox_core::LanguageTable::builtin(),
        isobox_core::Policy::default(),
    );
    let r = exec
        .execute(&isobox_core::ExecuteRequest {
            language: "bash".into(),
            code: Some(code.into()),
            args: Some(vec![host_pid.clone()]),
            limits: Some(limits(4000, 64)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    assert_eq!(get(&m, "uid", &r), "61500", "{r:?}");
    assert_eq!(get(&m, "direct", &r), "FAIL", "{r:?}");
    assert_eq!(get(&m, "survived", &r), "yes", "{r:?}");
    assert!(
        host.0.try_wait().unwrap().is_none(),
        "the sandbox killed a host process: {r:?}"
    );
    assert_eq!(procs_with(&token).len(), 1);
}

#[test]
fn host_listeners_are_unreachable() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    let name = format!("isobox-host-{}", unique_number(987_659));
    let unix =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    unix.set_nonblocking(true).unwrap();
    let code = r#"
import socket, sys
port, name = int(sys.argv[1]), sys.argv[2]
def attempt(key, family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(addr)
        print(key + '=OK')
    except OSError as e:
        print(key + '=' + type(e).__name__)
attempt('tcp', socket.AF_INET, ('127.0.0.1', port))
attempt('abstract', socket.AF_UNIX, '\0' + name)
"#;
    let r = run_script(
        "python",
        code,
        limits(5000, 128),
        &[&port.to_string(), &name],
    );
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    assert_eq!(get(&m, "tcp", &r), "ConnectionRefusedError", "{r:?}");
    assert_eq!(get(&m, "abstract", &r), "ConnectionRefusedError", "{r:?}");
    assert!(
        tcp.accept().is_err(),
        "the host TCP listener got a connection"
    );
    assert!(
        unix.accept().is_err(),
        "the host unix listener got a connection"
    );
}

// ---------------------------------------------------------------------------------------------
// File names: never options, response files or shell words, in any compiled language.
// ---------------------------------------------------------------------------------------------

/// The compiled languages this suite runs: those the languages suite runs too (all of them
/// must be installed here, or built as runtimes with ISOBOX_TEST_RUNTIMES). The table's other
/// compiled languages run from runtimes (tests/conformance.rs).
fn compiled_languages() -> Vec<std::sync::Arc<isobox_core::Language>> {
    let all: Vec<_> = ["java", "c", "cpp", "rust", "go"]
        .iter()
        .map(|n| executor().languages().get(n).expect("in the table").clone())
        .collect();
    for l in &all {
        assert!(l.compiled(), "{}", l.name);
        assert!(
            !executor().candidates(l).is_empty(),
            "{} is not installed here",
            l.name
        );
    }
    all
}

/// Names a compiler could take for an option or a response file, a shell could split, expand
/// or run, or a reader could confuse with another name; `EXT` becomes a source extension of the
/// language at hand.
fn hostile_file_names(ext: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "a b.EXT",
        "a.EXT @r a.EXT",
        "@r",
        "@r.EXT",
        "x@r.EXT",
        "-wrapper",
        "-wrapper.EXT",
        "-o",
        "-",
        "dir/-x.EXT",
        "dir/@r.EXT",
        "$(touch pwned).EXT",
        "${IFS}x.EXT",
        "$x.EXT",
        "`touch pwned`.EXT",
        "a;touch pwned.EXT",
        "a|b.EXT",
        "a&b.EXT",
        "a>b.EXT",
        "a<b.EXT",
        "a*.EXT",
        "a?.EXT",
        "[a].EXT",
        "{a,b}.EXT",
        "~x.EXT",
        "#x.EXT",
        "a=b.EXT",
        "a,b.EXT",
        "a:b.EXT",
        "a%b.EXT",
        "a!b.EXT",
        "'q'.EXT",
        "\"q\".EXT",
        "a\\b.EXT",
        "a\nb.EXT",
        "a\tb.EXT",
        "a\rb.EXT",
        "a\u{0}b.EXT",
        "\u{ff41}.EXT",  // fullwidth a
        "\u{0430}.EXT",  // Cyrillic a
        "a\u{200b}.EXT", // zero-width space
        "a\u{2024}EXT",  // one dot leader
        "a\u{a0}b.EXT",  // no-break space
        "+x.EXT",
        ".hidden.EXT",
        ".",
        "..",
        "../x.EXT",
        "a/../b.EXT",
        "a/./b.EXT",
        "./a.EXT",
        "a//b.EXT",
        "/abs.EXT",
        "dir/",
        "",
    ]
    .iter()
    .map(|n| n.replace("EXT", ext))
    .collect();
    v.push(format!("{}.{ext}", "x".repeat(300)));
    v.push(format!("{}/a.{ext}", vec!["d"; 200].join("/")));
    v
}

/// A minimal valid entry file of `lang` (its default file, compiling as a program).
fn entry_of(lang: &isobox_core::Language) -> (String, String) {
    let code = match lang.name.as_str() {
        "c" | "cpp" => "int main(void) { return 0; }\n",
        "java" => "public class Main { public static void main(String[] a) {} }\n",
        "go" => "package main\n\nfunc main() {}\n",
        "rust" => "fn main() {}\n",
        other => panic!("no entry program for {other}"),
    };
    (lang.file.clone(), code.to_string())
}

#[test]
fn hostile_file_names_are_refused_in_every_compiled_language() {
    for lang in compiled_languages() {
        let ext = lang.extensions[0].clone();
        let (entry, code) = entry_of(&lang);
        for name in hostile_file_names(&ext) {
            // The name as a second source, and as the entry itself.
            for list in [
                vec![(entry.clone(), code.clone()), (name.clone(), code.clone())],
                vec![(name.clone(), code.clone())],
            ] {
                let req = isobox_core::ExecuteRequest {
                    language: lang.name.clone(),
                    files: Some(
                        list.iter()
                            .map(|(n, c)| isobox_core::RequestFile {
                                name: n.clone(),
                                content: c.clone(),
                                encoding: None,
                            })
                            .collect(),
                    ),
                    ..Default::default()
                };
                // Compile and run (`execute`), and the syntax check (`validate` starts with the
                // same validation): refused before anything reaches the backend.
                match executor().execute(&req) {
                    Err(isobox_core::CoreError::InvalidRequest(_)) => {}
                    other => panic!("{}: {name:?} was not refused: {other:?}", lang.name),
                }
                match executor().submission(&req) {
                    Err(isobox_core::CoreError::InvalidRequest(_)) => {}
                    other => panic!("{}: {name:?} was not refused: {other:?}", lang.name),
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_file_names_are_400_invalid_request_on_execute_and_validate() {
    let instance = format!("test-{}-names", std::process::id());
    let backend = test_backend();
    let srv = TestServer::start(&[
        ("ISOBOX_BACKEND", backend.as_str()),
        ("ISOBOX_DOCKER_INSTANCE", instance.as_str()),
        ("ISOBOX_DOCKER_POOL", "0"),
        ("ISOBOX_RATE_LIMIT", "100000/min"),
    ])
    .await;
    let langs = tokio::task::spawn_blocking(compiled_languages)
        .await
        .unwrap();
    for lang in langs {
        let ext = lang.extensions[0].clone();
        let (entry, code) = entry_of(&lang);
        for name in hostile_file_names(&ext) {
            let body = serde_json::json!({
                "language": lang.name,
                "files": [
                    {"name": entry, "content": code},
                    {"name": name, "content": code},
                ],
            });
            for path in ["/api/v1/execute", "/api/v1/validate"] {
                let resp = srv.post_json(path, &body).await;
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap();
                assert_eq!(status, 400, "{} {path} {name:?}: {text}", lang.name);
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(
                    v["error"], "invalid_request",
                    "{} {path} {name:?}: {text}",
                    lang.name
                );
            }
        }
    }
}

/// What the injected compiler wrapper of the exploit prints (and then fails the step).
const INJECTED: &str = "INJECTED-7f3a";

/// The exploit's files: the entry, `a.<ext>`, a name that a shell splits into `a.<ext> @r
/// a.<ext>`, and the response file `r` that turns on gcc's `-wrapper` (a shell command).
fn response_file_exploit(entry: &str, ext: &str) -> Vec<(String, String)> {
    vec![
        (
            entry.to_string(),
            "int main(void) { return 0; }\n".to_string(),
        ),
        (
            format!("a.{ext}"),
            "int a_unused(void) { return 1; }\n".to_string(),
        ),
        (
            format!("a.{ext} @r a.{ext}"),
            "int b_unused(void) { return 2; }\n".to_string(),
        ),
        (
            "r".to_string(),
            format!("-wrapper '/bin/sh,-c,echo {INJECTED} >&2; exit 1'\n"),
        ),
    ]
}

#[test]
fn the_response_file_exploit_through_file_names_runs_nothing() {
    for lang in ["cpp", "c"] {
        let l = executor().languages().get(lang).unwrap().clone();
        let ext = &l.extensions[0];
        let exploit = response_file_exploit(&l.file, ext);
        let as_files = |list: &[(String, String)]| {
            list.iter()
                .map(|(n, c)| isobox_core::RequestFile {
                    name: n.clone(),
                    content: c.clone(),
                    encoding: None,
                })
                .collect::<Vec<_>>()
        };
        // 1. The request is refused: compile and run, and the syntax check.
        let req = isobox_core::ExecuteRequest {
            language: lang.into(),
            files: Some(as_files(&exploit)),
            ..Default::default()
        };
        match executor().execute(&req) {
            Err(isobox_core::CoreError::InvalidRequest(m)) => assert!(m.contains("@r"), "{m}"),
            other => panic!("{lang}: the exploit was not refused: {other:?}"),
        }
        assert!(matches!(
            executor().submission(&req),
            Err(isobox_core::CoreError::InvalidRequest(_))
        ));
        // 2. And even past validation (the name put back into a validated submission), the
        // commands give the name to the compiler as one argument: the wrapper never runs.
        let benign: Vec<(String, String)> = exploit
            .iter()
            .filter(|(n, _)| !n.contains(' '))
            .cloned()
            .collect();
        let mut sub = executor()
            .submission(&isobox_core::ExecuteRequest {
                language: lang.into(),
                files: Some(as_files(&benign)),
                ..Default::default()
            })
            .expect("the benign files are valid");
        let (name, content) = &exploit[2];
        sub.files.push(isobox_sandbox::SandboxFile {
            path: name.clone(),
            content: content.as_bytes().to_vec(),
            executable: false,
            readonly: false,
        });
        let r = executor()
            .run(&sub, None, &mut isobox_sandbox::NoIo)
            .expect("the run");
        let c = r.compile.as_ref().expect("a compile step");
        let all = format!("{}{}{}{}", c.stdout, c.stderr, r.stdout, r.stderr);
        assert!(
            !all.contains(INJECTED),
            "{lang}: the injected command ran: {r:?}"
        );
        let check = executor().check_spec(&sub).expect("a check command");
        let v = executor().syntax_check(&sub, &check).expect("the check");
        assert!(
            !v.errors.contains(INJECTED),
            "{lang}: the injected command ran in the check: {v:?}"
        );
    }
}

#[test]
fn allowed_unusual_file_names_compile_as_plain_sources() {
    // Names at the edge of the rule (`+`, `-`, `_`, several dots, digits first) are sources
    // like any other, in every compiled language that takes several files.
    let c_main = "int helper(void);\nint main(void) { return helper() == 42 ? 0 : 1; }\n";
    let c_helper = "int helper(void) { return 42; }\n";
    let go_main =
        "package main\n\nimport \"os\"\n\nfunc main() { if helper() != 42 { os.Exit(1) } }\n";
    let go_helper = "package main\n\nfunc helper() int { return 42 }\n";
    let java_main =
        "public class Main { public static void main(String[] a) { System.exit(Helper.answer() == 42 ? 0 : 1); } }\n";
    let java_helper = "class Helper { static int answer() { return 42; } }\n";
    let cases: [(&str, &str, &str, &str, &str); 4] = [
        ("c", "main.c", c_main, "2nd_lib-v1.0+x.c", c_helper),
        ("cpp", "main.cpp", c_main, "2nd_lib-v1.0+x.cpp", c_helper),
        ("go", "main.go", go_main, "2nd_lib-v1.0+x.go", go_helper),
        (
            "java",
            "Main.java",
            java_main,
            "Helper-v1.0+x.java",
            java_helper,
        ),
    ];
    for (lang, entry, main, name, helper) in cases {
        let r = run_with(lang, "", |req| {
            req.code = None;
            req.files = Some(files(&[(entry, main), (name, helper)]));
            req.limits = Some(limits(20000, 512));
        });
        let c = r.compile.as_ref().expect("a compile step");
        assert_eq!(c.status, "ok", "{lang}: {}\n{r:?}", c.stderr);
        assert_eq!(r.status, "ok", "{lang}: {r:?}");
        assert_eq!(r.exit_code, Some(0), "{lang}: {r:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Host-wide kernel tables and cross-run observation through system calls.
// ---------------------------------------------------------------------------------------------

fn aio_nr() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/aio-nr")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn aio_contexts_cannot_take_the_host_wide_table() {
    let code = c_src(
        r#"
#include <linux/aio_abi.h>
#include <sys/syscall.h>
int main(void) {
    int ok = 0, first_err = 0;
    for (int i = 0; i < 16; i++) {
        aio_context_t ctx = 0;
        errno = 0;
        if (syscall(SYS_io_setup, 4096, &ctx) == 0) ok++;
        else if (!first_err) first_err = errno;
    }
    printf("io_setup_ok=%d\n", ok);
    printf("io_setup=%s\n", first_err ? strerrorname_np(first_err) : "OK");
    unsigned char params[120] = {0};
    CHECK("io_uring_setup", syscall(425, 8, params));
    fflush(stdout);
    usleep(400000); /* hold what was taken while the host looks */
    return 0;
}
"#,
    );
    let before = aio_nr();
    let (r, most) = std::thread::scope(|s| {
        let h = s.spawn(|| run_c(&code, limits(5000, 128), &[]));
        let mut most = before;
        while !h.is_finished() {
            most = most.max(aio_nr());
            std::thread::sleep(Duration::from_millis(5));
        }
        (h.join().unwrap(), most)
    });
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    assert_eq!(get(&m, "io_setup_ok", &r), "0", "{r:?}");
    assert_eq!(get(&m, "io_setup", &r), "EPERM", "{r:?}");
    assert_eq!(get(&m, "io_uring_setup", &r), "EPERM", "{r:?}");
    // Nothing of the host's table was taken (others on the host may use a little of it).
    assert!(
        most < before + 4096,
        "aio-nr went from {before} to {most} during the run: {r:?}"
    );
}

#[test]
fn file_system_notifications_are_refused() {
    let code = c_src(
        r#"
#include <sys/inotify.h>
#include <sys/fanotify.h>
#include <sys/syscall.h>
int main(void) {
    CHECK("inotify_init", syscall(SYS_inotify_init));
    CHECK("inotify_init1", inotify_init1(IN_NONBLOCK));
    /* On a bad fd: EBADF if the call reached the kernel, EPERM if the filter refused it. */
    CHECK("inotify_add_watch", inotify_add_watch(-1, "/usr", IN_OPEN));
    CHECK("inotify_rm_watch", inotify_rm_watch(-1, 1));
    CHECK("fanotify_init", fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID, O_RDONLY));
    CHECK("fanotify_mark", fanotify_mark(-1, FAN_MARK_ADD, FAN_OPEN, AT_FDCWD, "/usr"));
    int d = open("/usr", O_RDONLY | O_DIRECTORY);
    CHECK("fcntl_notify", fcntl(d, F_NOTIFY, DN_ACCESS));
    return 0;
}
"#,
    );
    let r = run_c(&code, limits(5000, 128), &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    let m = kv(&r.stdout);
    for k in [
        "inotify_init",
        "inotify_init1",
        "inotify_add_watch",
        "inotify_rm_watch",
        "fanotify_init",
        "fanotify_mark",
        "fcntl_notify",
    ] {
        assert_eq!(get(&m, k, &r), "EPERM", "{k}: {r:?}");
    }
}

/// `/proc/self/limits` as name -> (soft, hard), `unlimited` as u64::MAX.
fn parse_limits(text: &str) -> BTreeMap<String, (u64, u64)> {
    let num = |s: &str| {
        if s == "unlimited" {
            u64::MAX
        } else {
            s.parse().unwrap()
        }
    };
    text.lines()
        .skip(1)
        .filter(|l| l.len() > 26)
        .map(|l| {
            let (name, rest) = l.split_at(26);
            let mut w = rest.split_whitespace();
            let soft = num(w.next().unwrap());
            let hard = num(w.next().unwrap());
            (name.trim().to_string(), (soft, hard))
        })
        .collect()
}

#[test]
fn every_rlimit_of_the_program_is_pinned() {
    // Change what this process (and so a native sandbox's parents) would pass on, to values
    // we never set: none of it may reach the program. Docker containers start from the
    // engine's limits instead. (The tests may lack CAP_SYS_RESOURCE, so these only lower; the
    // host's RTPRIO and NICE are 0 already, which we cannot lower to show more.)
    for (res, v) in [
        (libc::RLIMIT_NPROC, 7_777),
        (libc::RLIMIT_SIGPENDING, 6_666),
        (libc::RLIMIT_MSGQUEUE, 555_555),
        (libc::RLIMIT_LOCKS, 4_444),
        (libc::RLIMIT_RTTIME, 33_333_333),
        (libc::RLIMIT_MEMLOCK, 2 << 20),
    ] {
        let rl = libc::rlimit {
            rlim_cur: v,
            rlim_max: v,
        };
        // SAFETY: setrlimit on a local struct.
        assert_eq!(unsafe { libc::setrlimit(res, &rl) }, 0, "setrlimit {res}");
    }
    let mut l = limits(4000, 128);
    l.max_processes = Some(24);
    // Both phases: the compile step (with the language's compile limits) and the run.
    let code = c_src(
        r#"
int main(void) {
    FILE *f = fopen("/proc/self/limits", "r");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fputs(buf, stdout);
    return 0;
}
"#,
    );
    let r = run_c(&code, l.clone(), &[]);
    assert_eq!(r.status, "ok", "{r:?}");
    let have = parse_limits(&r.stdout);
    assert_eq!(have.len(), 16, "{}", r.stdout);
    let req = isobox_core::ExecuteRequest {
        language: "c".into(),
        code: Some(code.clone()),
        limits: Some(l),
        ..Default::default()
    };
    let sub = executor().submission(&req).unwrap();
    let spec = executor().run_spec(&sub);
    let run = &spec.phases[1].limits;
    let inf = u64::MAX;
    let want: BTreeMap<&str, u64> = BTreeMap::from([
        ("Max cpu time", run.cpu.as_secs() + 2),
        ("Max file size", run.max_file_bytes),
        ("Max data size", inf),
        ("Max stack size", run.stack_bytes),
        ("Max core file size", 0),
        ("Max resident set", inf),
        ("Max processes", u64::from(run.max_processes) + 4),
        ("Max open files", run.max_open_files),
        ("Max locked memory", 64 << 10),
        ("Max address space", inf),
        ("Max file locks", 1024),
        ("Max pending signals", 1024),
        ("Max msgqueue size", 256 << 10),
        ("Max nice priority", 0),
        ("Max realtime priority", 0),
        ("Max realtime timeout", (run.cpu.as_secs() + 2) * 1_000_000),
    ]);
    for (name, v) in want {
        let got = have
            .get(name)
            .unwrap_or_else(|| panic!("no {name}: {}", r.stdout));
        assert_eq!(*got, (v, v), "{name}: {}", r.stdout);
    }
}

/// A run that holds record locks on shared files while another run looks: SECURITY.md's
/// "Record locks" paragraph states what this shows (a channel between runs on native, none on
/// docker), and this test keeps the statement true.
#[test]
fn record_locks_on_shared_files_are_the_documented_channel() {
    let off = 1_000_000 + u64::from(std::process::id());
    let holder = format!(
        r#"
import fcntl, struct, time
f = open('/usr/bin/env', 'rb')
fcntl.fcntl(f, fcntl.F_SETLK, struct.pack('hhqqi', fcntl.F_RDLCK, 0, {off}, 7, 0))
d = open('/dev/null', 'r+b')
fcntl.fcntl(d, fcntl.F_SETLK, struct.pack('hhqqi', fcntl.F_RDLCK, 0, {off}, 3, 0))
print('held', flush=True)
time.sleep(2)
"#
    );
    let looker = format!(
        r#"
import errno, fcntl, struct, time
time.sleep(0.8)
f = open('/usr/bin/env', 'rb')
r = fcntl.fcntl(f, fcntl.F_GETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, {off} + 3, 1, 0))
t, _, start, length, pid = struct.unpack('hhqqi', r)
print('usr', 'F_RDLCK' if t == fcntl.F_RDLCK else 'none', start, length, pid)
d = open('/dev/null', 'r+b')
try:
    fcntl.fcntl(d, fcntl.F_SETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, {off}, 1, 0))
    print('devnull free')
except OSError as e:
    print('devnull', errno.errorcode[e.errno])
"#
    );
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run_script("python", &holder, limits(6000, 128), &[]));
        let b = s.spawn(|| run_script("python", &looker, limits(6000, 128), &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.status, "ok", "{a:?}");
    assert_eq!(a.stdout, "held\n", "{a:?}");
    assert_eq!(b.status, "ok", "{b:?}");
    if on_docker() {
        // Each container's root is an overlay mount of its own, and /dev a tmpfs of its own:
        // other containers' locks are on other inodes.
        // (F_GETLK leaves the range asked about as it was when nothing conflicts.)
        assert_eq!(
            b.stdout,
            format!("usr none {} 1 0\ndevnull free\n", off + 3),
            "{b:?}"
        );
    } else {
        // The read-only binds and the device nodes are the host's inodes: the lock and its
        // exact range are visible to the other run (the holder's pid reads 0: it is in another
        // pid namespace), and /dev/null (writable) takes write
        // locks, which the other's lock makes fail.
        assert_eq!(
            b.stdout,
            format!("usr F_RDLCK {off} 7 0\ndevnull EAGAIN\n"),
            "{b:?}"
        );
    }
}
