//! The seccomp-bpf filter installed in the payload as the very last step before `execve`.
//!
//! A default-deny allowlist in the spirit of Docker's default profile, built here as classic BPF
//! (no C library needed):
//! - a foreign architecture (i386 `int 0x80` on x86_64, AArch32 on arm64) or, on x86_64, an x32
//!   syscall number kills the process;
//! - `clone3` answers `ENOSYS` (BPF cannot inspect its flags, so libc falls back to `clone`);
//! - `clone` with any namespace flag, `socket` for `AF_ALG`/`AF_VSOCK`, `ioctl(TIOCSTI)` and
//!   `ioctl(TIOCLINUX)` (compared on the low 32 bits only, CVE-2019-10063), `fcntl(F_SETLEASE)`
//!   and `fcntl(F_NOTIFY)` are refused; `flock` succeeds without locking anything (a lock on the
//!   read-only files every sandbox shares would be a channel between runs);
//! - mount, umount2, pivot_root, chroot, setns, unshare, ptrace, process_vm_*, keyctl, add_key,
//!   request_key, bpf, perf_event_open, userfaultfd, io_uring_*, kexec, modules, ... are simply
//!   not on the allowlist and get `EPERM`;
//! - so are the native AIO calls (`io_setup` and the rest: every context takes slots of the
//!   host-wide `fs.aio-max-nr` table, which one run could fill) and inotify and fanotify (a watch
//!   on the read-only binds every sandbox shares, such as /usr, sees other runs open and read
//!   files there; `fcntl(F_NOTIFY)` is refused for the same reason).
//!
//! It is written for x86_64 and aarch64: the allowlist is one table of names, the numbers come
//! from `libc::SYS_*` for the architecture we are built for, and the calls that aarch64's table
//! lacks (`open`, `stat`, `fork`, ...) simply have no number there.

use libc::sock_filter;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the seccomp filter is written for x86_64 and aarch64 only");

/// The one architecture the filter admits (linux/audit.h); any other is killed.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
/// x86_64 also takes x32 ABI calls under its own audit arch, marked by this bit in the number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// BPF opcodes (linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JEQ: u16 = 0x10;
const BPF_JGE: u16 = 0x30;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;

// seccomp return values (linux/seccomp.h).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// struct seccomp_data offsets.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

const CLONE_NS_FLAGS: u32 = 0x7E02_0000; // NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
const AF_ALG: u32 = 38;
const AF_VSOCK: u32 = 40;
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;
const F_SETLEASE: u32 = 1024;
const F_NOTIFY: u32 = 1026;

/// `(name, number)` pairs from `SYS_*` names, the number for the architecture we are built for.
/// The calls after `x86_64_only:` are the older ones that aarch64's table (the kernel's generic
/// one) replaced with the `*at` forms, `pipe2`, `dup3`, `ppoll`, `epoll_pwait`, `clone` and so
/// on (plus x86_64's own `arch_prctl` and TLS calls): on aarch64 they have no number (`None`). Every name is kept,
/// since the Docker profile is by name and covers both architectures.
macro_rules! allowed {
    ($($n:ident),* ; x86_64_only: $($x:ident),* $(,)?) => {
        &[$((stringify!($n), Some(libc::$n)),)* $((stringify!($x), x86_64_only!($x)),)*]
    };
}
#[cfg(target_arch = "x86_64")]
macro_rules! x86_64_only {
    ($x:ident) => {
        Some(libc::$x)
    };
}
#[cfg(target_arch = "aarch64")]
macro_rules! x86_64_only {
    ($x:ident) => {
        None
    };
}
/// Syscalls that are allowed with any arguments (name, number on this architecture).
const ALLOWED: &[(&str, Option<libc::c_long>)] = allowed![
    SYS_read,
    SYS_write,
    SYS_close,
    SYS_fstat,
    SYS_lseek,
    SYS_mmap,
    SYS_mprotect,
    SYS_munmap,
    SYS_brk,
    SYS_rt_sigaction,
    SYS_rt_sigprocmask,
    SYS_rt_sigreturn,
    SYS_pread64,
    SYS_pwrite64,
    SYS_readv,
    SYS_writev,
    SYS_sched_yield,
    SYS_mremap,
    SYS_msync,
    SYS_mincore,
    SYS_madvise,
    SYS_shmget,
    SYS_shmat,
    SYS_shmctl,
    SYS_dup,
    SYS_nanosleep,
    SYS_getitimer,
    SYS_setitimer,
    SYS_getpid,
    SYS_sendfile,
    SYS_connect,
    SYS_accept,
    SYS_sendto,
    SYS_recvfrom,
    SYS_sendmsg,
    SYS_recvmsg,
    SYS_shutdown,
    SYS_bind,
    SYS_listen,
    SYS_getsockname,
    SYS_getpeername,
    SYS_socketpair,
    SYS_setsockopt,
    SYS_getsockopt,
    SYS_execve,
    SYS_exit,
    SYS_wait4,
    SYS_kill,
    SYS_uname,
    SYS_semget,
    SYS_semop,
    SYS_semctl,
    SYS_shmdt,
    SYS_msgget,
    SYS_msgsnd,
    SYS_msgrcv,
    SYS_msgctl,
    SYS_fsync,
    SYS_fdatasync,
    SYS_truncate,
    SYS_ftruncate,
    SYS_getcwd,
    SYS_chdir,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchown,
    SYS_umask,
    SYS_gettimeofday,
    SYS_getrlimit,
    SYS_getrusage,
    SYS_sysinfo,
    SYS_times,
    SYS_getuid,
    SYS_getgid,
    SYS_setuid,
    SYS_setgid,
    SYS_geteuid,
    SYS_getegid,
    SYS_setpgid,
    SYS_getppid,
    SYS_setsid,
    SYS_setreuid,
    SYS_setregid,
    SYS_getgroups,
    SYS_setgroups,
    SYS_setresuid,
    SYS_getresuid,
    SYS_setresgid,
    SYS_getresgid,
    SYS_getpgid,
    SYS_setfsuid,
    SYS_setfsgid,
    SYS_getsid,
    SYS_capget,
    SYS_rt_sigpending,
    SYS_rt_sigtimedwait,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigsuspend,
    SYS_sigaltstack,
    SYS_statfs,
    SYS_fstatfs,
    SYS_getpriority,
    SYS_setpriority,
    SYS_sched_setparam,
    SYS_sched_getparam,
    SYS_sched_setscheduler,
    SYS_sched_getscheduler,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_rr_get_interval,
    SYS_mlock,
    SYS_munlock,
    SYS_mlockall,
    SYS_munlockall,
    SYS_prctl,
    SYS_setrlimit,
    SYS_sync,
    SYS_gettid,
    SYS_readahead,
    SYS_setxattr,
    SYS_lsetxattr,
    SYS_fsetxattr,
    SYS_getxattr,
    SYS_lgetxattr,
    SYS_fgetxattr,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_flistxattr,
    SYS_removexattr,
    SYS_lremovexattr,
    SYS_fremovexattr,
    SYS_tkill,
    SYS_futex,
    SYS_sched_setaffinity,
    SYS_sched_getaffinity,
    SYS_remap_file_pages,
    SYS_getdents64,
    SYS_set_tid_address,
    SYS_restart_syscall,
    SYS_semtimedop,
    SYS_fadvise64,
    SYS_timer_create,
    SYS_timer_settime,
    SYS_timer_gettime,
    SYS_timer_getoverrun,
    SYS_timer_delete,
    SYS_clock_gettime,
    SYS_clock_getres,
    SYS_clock_nanosleep,
    SYS_exit_group,
    SYS_epoll_ctl,
    SYS_tgkill,
    SYS_mbind,
    SYS_set_mempolicy,
    SYS_get_mempolicy,
    SYS_mq_open,
    SYS_mq_unlink,
    SYS_mq_timedsend,
    SYS_mq_timedreceive,
    SYS_mq_notify,
    SYS_mq_getsetattr,
    SYS_waitid,
    SYS_ioprio_set,
    SYS_ioprio_get,
    SYS_openat,
    SYS_mkdirat,
    SYS_mknodat,
    SYS_fchownat,
    SYS_newfstatat,
    SYS_unlinkat,
    SYS_renameat,
    SYS_linkat,
    SYS_symlinkat,
    SYS_readlinkat,
    SYS_fchmodat,
    SYS_faccessat,
    SYS_pselect6,
    SYS_ppoll,
    SYS_set_robust_list,
    SYS_get_robust_list,
    SYS_splice,
    SYS_tee,
    SYS_sync_file_range,
    SYS_vmsplice,
    SYS_utimensat,
    SYS_epoll_pwait,
    SYS_timerfd_create,
    SYS_fallocate,
    SYS_timerfd_settime,
    SYS_timerfd_gettime,
    SYS_accept4,
    SYS_signalfd4,
    SYS_eventfd2,
    SYS_epoll_create1,
    SYS_dup3,
    SYS_pipe2,
    SYS_preadv,
    SYS_pwritev,
    SYS_rt_tgsigqueueinfo,
    SYS_recvmmsg,
    SYS_prlimit64,
    SYS_syncfs,
    SYS_sendmmsg,
    SYS_getcpu,
    SYS_sched_setattr,
    SYS_sched_getattr,
    SYS_renameat2,
    SYS_seccomp,
    SYS_getrandom,
    SYS_memfd_create,
    SYS_execveat,
    SYS_membarrier,
    SYS_mlock2,
    SYS_copy_file_range,
    SYS_preadv2,
    SYS_pwritev2,
    SYS_pkey_mprotect,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_statx,
    SYS_rseq,
    SYS_pidfd_send_signal,
    SYS_pidfd_open,
    SYS_close_range,
    SYS_openat2,
    SYS_faccessat2,
    SYS_epoll_pwait2,
    SYS_landlock_create_ruleset,
    SYS_landlock_add_rule,
    SYS_landlock_restrict_self,
    SYS_futex_waitv;
    x86_64_only:
    SYS_open,
    SYS_stat,
    SYS_lstat,
    SYS_poll,
    SYS_access,
    SYS_pipe,
    SYS_select,
    SYS_dup2,
    SYS_pause,
    SYS_alarm,
    SYS_fork,
    SYS_vfork,
    SYS_getdents,
    SYS_rename,
    SYS_mkdir,
    SYS_rmdir,
    SYS_creat,
    SYS_link,
    SYS_unlink,
    SYS_symlink,
    SYS_readlink,
    SYS_chmod,
    SYS_chown,
    SYS_lchown,
    SYS_getpgrp,
    SYS_utime,
    SYS_mknod,
    SYS_arch_prctl,
    SYS_time,
    SYS_set_thread_area,
    SYS_get_thread_area,
    SYS_epoll_create,
    SYS_epoll_wait,
    SYS_utimes,
    SYS_futimesat,
    SYS_signalfd,
    SYS_eventfd,
];

/// `fchmodat2` (kernel 6.6) has no libc constant on aarch64 yet; numbers from 424 on are the same
/// on every architecture.
const FCHMODAT2: (&str, Option<libc::c_long>) = ("fchmodat2", Some(452));

/// `personality` values Docker allows: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE combos, query.
const PERSONALITY_OK: &[u32] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn errno(e: i32) -> u32 {
    RET_ERRNO | (e as u32 & 0xffff)
}

/// Appends: "if nr == `nr` run `body` (which must end in a return), else skip it".
fn push_case(prog: &mut Vec<sock_filter>, nr: u32, body: Vec<sock_filter>) {
    assert!(body.len() < 256, "seccomp case too long for a BPF jump");
    prog.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR));
    prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, body.len() as u8));
    prog.extend(body);
}

/// Body: load the low 32 bits of argument `arg`, return `deny` if it is one of `values`, else allow.
fn deny_arg_values(arg: u32, values: &[u32], deny: u32) -> Vec<sock_filter> {
    let mut b = vec![stmt(BPF_LD | BPF_W | BPF_ABS, off_arg_lo(arg))];
    for (i, v) in values.iter().enumerate() {
        // On match jump to the deny return at the end; the allow return sits just before it.
        let to_deny = (values.len() - i) as u8;
        b.push(jump(BPF_JMP | BPF_JEQ | BPF_K, *v, to_deny, 0));
    }
    b.push(stmt(BPF_RET | BPF_K, RET_ALLOW));
    b.push(stmt(BPF_RET | BPF_K, deny));
    b
}

/// Builds the filter program.
pub fn build_filter() -> Vec<sock_filter> {
    let mut p = Vec::with_capacity(2 * ALLOWED.len() + 64);
    // Architecture: any other than ours (i386 via int 0x80 on x86_64, AArch32 on arm64) is
    // killed: its numbers mean other calls.
    p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH));
    p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0));
    p.push(stmt(BPF_RET | BPF_K, RET_KILL_PROCESS));
    // x32 ABI numbers (bit 30) are killed too.
    #[cfg(target_arch = "x86_64")]
    {
        p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR));
        p.push(jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1));
        p.push(stmt(BPF_RET | BPF_K, RET_KILL_PROCESS));
    }

    // clone3: ENOSYS so that libc falls back to clone, whose flags we can check.
    push_case(
        &mut p,
        libc::SYS_clone3 as u32,
        vec![stmt(BPF_RET | BPF_K, errno(libc::ENOSYS))],
    );
    // clone: no namespace flags.
    push_case(
        &mut p,
        libc::SYS_clone as u32,
        vec![
            stmt(BPF_LD | BPF_W | BPF_ABS, off_arg_lo(0)),
            jump(BPF_JMP | BPF_JSET | BPF_K, CLONE_NS_FLAGS, 1, 0),
            stmt(BPF_RET | BPF_K, RET_ALLOW),
            stmt(BPF_RET | BPF_K, errno(libc::EPERM)),
        ],
    );
    // socket: no AF_ALG (kernel crypto API) and no AF_VSOCK (host/VM channel).
    push_case(
        &mut p,
        libc::SYS_socket as u32,
        deny_arg_values(0, &[AF_ALG, AF_VSOCK], errno(libc::EAFNOSUPPORT)),
    );
    // ioctl: no terminal injection. Only the low 32 bits are the command (CVE-2019-10063).
    push_case(
        &mut p,
        libc::SYS_ioctl as u32,
        deny_arg_values(1, &[TIOCSTI, TIOCLINUX], errno(libc::EPERM)),
    );
    // flock on the read-only files every sandbox shares (/usr, /etc, a runtime's root) would
    // let runs block or signal each other and the host. It answers success and locks nothing:
    // toolchains that lock their caches (Go, Crystal) work, and no lock is ever seen by
    // another run. (ENOSYS made Go's build cache fail.)
    push_case(
        &mut p,
        libc::SYS_flock as u32,
        vec![stmt(BPF_RET | BPF_K, errno(0))],
    );
    // fcntl: no leases and no directory notifications on shared files; locks on own files are fine.
    push_case(
        &mut p,
        libc::SYS_fcntl as u32,
        deny_arg_values(1, &[F_SETLEASE, F_NOTIFY], errno(libc::EPERM)),
    );
    // personality: only the harmless values.
    let mut pers = vec![stmt(BPF_LD | BPF_W | BPF_ABS, off_arg_lo(0))];
    for (i, v) in PERSONALITY_OK.iter().enumerate() {
        let to_allow = (PERSONALITY_OK.len() - i) as u8;
        pers.push(jump(BPF_JMP | BPF_JEQ | BPF_K, *v, to_allow, 0));
    }
    pers.push(stmt(BPF_RET | BPF_K, errno(libc::EPERM)));
    pers.push(stmt(BPF_RET | BPF_K, RET_ALLOW));
    push_case(&mut p, libc::SYS_personality as u32, pers);

    // The plain allowlist as a binary search over its ranges of consecutive numbers: a few
    // comparisons for any number rather than one per allowed syscall. That matters when the
    // filter is installed (the kernel runs it for every syscall number to build its cache of
    // always-allowed ones, with interrupts off) and for every syscall it cannot cache.
    let mut allowed = allowed_numbers();
    allowed.sort_unstable();
    allowed.dedup();
    p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR));
    p.extend(search(&boundaries(&allowed), false));
    p
}

/// The numbers of the plain allowlist on this architecture.
fn allowed_numbers() -> Vec<u32> {
    ALLOWED
        .iter()
        .chain([&FCHMODAT2])
        .filter_map(|(_, n)| n.map(|n| n as u32))
        .collect()
}

/// Where the decision changes along the syscall numbers: `b[0]` is the first allowed number,
/// `b[1]` the first denied one after it, and so on.
fn boundaries(sorted: &[u32]) -> Vec<u32> {
    let mut b = Vec::new();
    for (i, &nr) in sorted.iter().enumerate() {
        if i == 0 || sorted[i - 1] + 1 != nr {
            b.push(nr);
        }
        if sorted.get(i + 1) != Some(&(nr + 1)) {
            b.push(nr + 1);
        }
    }
    b
}

/// A search tree over `bounds` for the number in the accumulator: returns allow inside a range,
/// EPERM outside. `allowed_below` is the decision for numbers below `bounds[0]`. Laid out as
/// "test; lower half; upper half", so a jump skips at most the lower half.
fn search(bounds: &[u32], allowed_below: bool) -> Vec<sock_filter> {
    let ret = |allow: bool| {
        stmt(
            BPF_RET | BPF_K,
            if allow { RET_ALLOW } else { errno(libc::EPERM) },
        )
    };
    if bounds.is_empty() {
        return vec![ret(allowed_below)];
    }
    let mid = bounds.len() / 2;
    // Below bounds[mid]: the decision flips once per bound before mid.
    let lower = search(&bounds[..mid], allowed_below);
    let upper = search(&bounds[mid + 1..], allowed_below ^ mid.is_multiple_of(2));
    assert!(
        lower.len() < 256,
        "seccomp search tree too deep for a BPF jump"
    );
    let mut v = vec![jump(
        BPF_JMP | BPF_JGE | BPF_K,
        bounds[mid],
        lower.len() as u8,
        0,
    )];
    v.extend(lower);
    v.extend(upper);
    v
}

/// The same policy as a Docker seccomp profile (`deploy/seccomp.json`, for the docker backend
/// and for operators who run our runtime image themselves): default deny (EPERM), the host's
/// architecture alone (x86_64 without x32 and i386, or aarch64 without AArch32), the same
/// allowlist, clone3 ENOSYS, flock a no-op that succeeds, clone without namespace flags, no
/// AF_ALG or AF_VSOCK sockets, no TIOCSTI/TIOCLINUX, no leases or notifications, harmless
/// personalities.
///
/// One profile serves both architectures, whichever we are built for: Docker profiles name
/// syscalls, and the runtime skips the names its architecture lacks (`open` on aarch64). Its
/// `archMap` gives each architecture no sub-architectures, so Docker puts the host's alone in
/// the filter (an `architectures` list would be taken as it is, for any host).
pub fn docker_profile() -> serde_json::Value {
    use serde_json::json;
    let mut names: Vec<String> = ALLOWED
        .iter()
        .chain([&FCHMODAT2])
        .map(|(n, _)| n.trim_start_matches("SYS_").to_string())
        .collect();
    names.sort();
    names.dedup();
    // libseccomp takes one comparison per argument and rule, and compares all 64 bits while
    // the kernel reads these arguments as 32-bit ints (so `TIOCSTI | 1 << 32` *is* TIOCSTI).
    // "Allow every 32-bit value but a..b" is therefore written as: below a, each value in
    // between, and the aligned blocks from b+1 up to u32::MAX (masked compares that also
    // require the high half to be zero). Anything with high bits set is refused.
    let except = |name: &str, index: u32, lo: u32, hi: u32| -> Vec<serde_json::Value> {
        let mut r = vec![json!({"names": [name], "action": "SCMP_ACT_ALLOW",
                                "args": [{"index": index, "value": lo, "op": "SCMP_CMP_LT"}]})];
        for v in lo + 1..hi {
            r.push(json!({"names": [name], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": index, "value": v, "op": "SCMP_CMP_EQ"}]}));
        }
        for (mask, prefix) in aligned_blocks(u64::from(hi) + 1, u64::from(u32::MAX)) {
            r.push(json!({"names": [name], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": index, "value": mask, "valueTwo": prefix,
                                    "op": "SCMP_CMP_MASKED_EQ"}]}));
        }
        r
    };
    // The refused values themselves, whatever the high half holds, with the native errno.
    let deny = |name: &str, index: u32, v: u32, e: i32| {
        json!({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": e,
               "args": [{"index": index, "value": u64::from(u32::MAX), "valueTwo": v,
                         "op": "SCMP_CMP_MASKED_EQ"}]})
    };
    let mut rules = vec![
        json!({"names": names, "action": "SCMP_ACT_ALLOW"}),
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
        json!({"names": ["flock"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0}),
        json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}),
    ];
    rules.extend(except("socket", 0, AF_ALG, AF_VSOCK));
    rules.push(deny("socket", 0, AF_ALG, libc::EAFNOSUPPORT));
    rules.push(deny("socket", 0, AF_VSOCK, libc::EAFNOSUPPORT));
    rules.extend(except("ioctl", 1, TIOCSTI, TIOCLINUX));
    rules.extend(except("fcntl", 1, F_SETLEASE, F_NOTIFY));
    for v in PERSONALITY_OK {
        rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}));
    }
    json!({
        "comment": "Generated by isobox (crates/isobox-sandbox/src/seccomp.rs, docker_profile); a test keeps it in sync.",
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []},
        ],
        "syscalls": rules
    })
}

/// `[lo, hi]` as aligned power-of-two blocks, each `(mask, prefix)` with `x & mask == prefix`.
fn aligned_blocks(mut lo: u64, hi: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    while lo <= hi {
        let mut size: u64 = 1;
        while lo.is_multiple_of(size * 2) && lo + size * 2 - 1 <= hi {
            size *= 2;
        }
        out.push((!(size - 1), lo));
        lo += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    const AUDIT_ARCH_ARM: u32 = 0x4000_0028;

    /// A tiny classic-BPF interpreter, enough to check the filter's decisions without a kernel.
    fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        loop {
            let ins = prog[pc];
            match ins.code {
                c if c == BPF_LD | BPF_W | BPF_ABS => {
                    let k = ins.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                    pc += 1;
                }
                c if c == BPF_RET | BPF_K => return ins.k,
                c if c & 0x07 == BPF_JMP => {
                    let taken = match c & 0xf0 {
                        BPF_JEQ => acc == ins.k,
                        BPF_JGE => acc >= ins.k,
                        BPF_JSET => acc & ins.k != 0,
                        _ => panic!("unknown jump"),
                    };
                    pc += 1 + if taken {
                        ins.jt as usize
                    } else {
                        ins.jf as usize
                    };
                }
                _ => panic!("unknown opcode {:#x}", ins.code),
            }
        }
    }

    fn sys(nr: libc::c_long, args: [u64; 6]) -> u32 {
        run(&build_filter(), AUDIT_ARCH, nr as u32, args)
    }

    #[test]
    fn allows_common_syscalls() {
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_execve,
            libc::SYS_futex,
            libc::SYS_exit_group,
        ] {
            assert_eq!(sys(nr, [0; 6]), RET_ALLOW, "syscall {nr}");
        }
    }

    #[test]
    fn denies_dangerous_syscalls() {
        for nr in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_setns,
            libc::SYS_unshare,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
            libc::SYS_io_setup,
            libc::SYS_io_submit,
            libc::SYS_io_getevents,
            libc::SYS_io_destroy,
            libc::SYS_io_cancel,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_inotify_init,
            libc::SYS_inotify_init1,
            libc::SYS_inotify_add_watch,
            libc::SYS_inotify_rm_watch,
            libc::SYS_fanotify_init,
            libc::SYS_fanotify_mark,
            libc::SYS_kexec_load,
            libc::SYS_init_module,
            libc::SYS_open_tree,
            libc::SYS_move_mount,
            libc::SYS_fsopen,
        ] {
            assert_eq!(sys(nr, [0; 6]), errno(libc::EPERM), "syscall {nr}");
        }
    }

    #[test]
    fn clone3_is_enosys_and_clone_flags_are_checked() {
        assert_eq!(sys(libc::SYS_clone3, [0; 6]), errno(libc::ENOSYS));
        assert_eq!(
            sys(libc::SYS_clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(sys(libc::SYS_clone, [thread, 0, 0, 0, 0, 0]), RET_ALLOW);
        for f in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
        ] {
            assert_eq!(
                sys(libc::SYS_clone, [f as u64, 0, 0, 0, 0, 0]),
                errno(libc::EPERM)
            );
        }
    }

    #[test]
    fn socket_families_and_ioctls() {
        assert_eq!(
            sys(libc::SYS_socket, [libc::AF_INET as u64, 1, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            sys(libc::SYS_socket, [libc::AF_UNIX as u64, 1, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            sys(libc::SYS_socket, [AF_VSOCK as u64, 1, 0, 0, 0, 0]),
            errno(libc::EAFNOSUPPORT)
        );
        assert_eq!(
            sys(libc::SYS_socket, [AF_ALG as u64, 5, 0, 0, 0, 0]),
            errno(libc::EAFNOSUPPORT)
        );
        assert_eq!(
            sys(libc::SYS_ioctl, [0, TIOCSTI as u64, 0, 0, 0, 0]),
            errno(libc::EPERM)
        );
        // High bits set must not sneak past the check.
        assert_eq!(
            sys(
                libc::SYS_ioctl,
                [0, 0xffff_ffff_0000_0000 | TIOCSTI as u64, 0, 0, 0, 0]
            ),
            errno(libc::EPERM)
        );
        assert_eq!(
            sys(libc::SYS_ioctl, [0, libc::TCGETS, 0, 0, 0, 0]),
            RET_ALLOW
        );
    }

    #[test]
    fn the_filter_admits_the_architecture_it_is_built_for() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(AUDIT_ARCH, AUDIT_ARCH_X86_64);
        #[cfg(target_arch = "aarch64")]
        assert_eq!(AUDIT_ARCH, AUDIT_ARCH_AARCH64);
    }

    #[test]
    fn foreign_arches_are_killed() {
        let p = build_filter();
        let getpid = libc::SYS_getpid as u32;
        assert_eq!(run(&p, AUDIT_ARCH, getpid, [0; 6]), RET_ALLOW);
        for arch in [
            AUDIT_ARCH_X86_64,
            AUDIT_ARCH_AARCH64,
            AUDIT_ARCH_I386,
            AUDIT_ARCH_ARM,
        ] {
            if arch != AUDIT_ARCH {
                assert_eq!(
                    run(&p, arch, getpid, [0; 6]),
                    RET_KILL_PROCESS,
                    "arch {arch:#x}"
                );
                // Whatever the number: the other arch's getpid and read, say.
                for nr in [0, 20, 39, 63, 172] {
                    assert_eq!(run(&p, arch, nr, [0; 6]), RET_KILL_PROCESS);
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_numbers_are_killed() {
        let p = build_filter();
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 39, [0; 6]),
            RET_KILL_PROCESS
        );
    }

    /// aarch64 numbers its calls by the kernel's generic table (include/uapi/asm-generic/
    /// unistd.h), not x86_64's: a few of them, checked against the filter and libc.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn aarch64_numbers() {
        let allowed = [
            (56, libc::SYS_openat),
            (63, libc::SYS_read),
            (64, libc::SYS_write),
            (61, libc::SYS_getdents64),
            (79, libc::SYS_newfstatat),
            (80, libc::SYS_fstat),
            (94, libc::SYS_exit_group),
            (172, libc::SYS_getpid),
            (221, libc::SYS_execve),
        ];
        for (nr, sys_nr) in allowed {
            assert_eq!(sys_nr, nr);
            assert_eq!(sys(nr, [0; 6]), RET_ALLOW, "syscall {nr}");
        }
        // x86_64's open (2), stat (4) and pipe (22) are io_submit, io_getevents and epoll_pwait
        // here: the first two refused, the last allowed.
        let refused = [
            (0, libc::SYS_io_setup),
            (2, libc::SYS_io_submit),
            (4, libc::SYS_io_getevents),
            (26, libc::SYS_inotify_init1),
            (39, libc::SYS_umount2),
            (40, libc::SYS_mount),
            (41, libc::SYS_pivot_root),
            (97, libc::SYS_unshare),
            (117, libc::SYS_ptrace),
            (280, libc::SYS_bpf),
        ];
        for (nr, sys_nr) in refused {
            assert_eq!(sys_nr, nr);
            assert_eq!(sys(nr, [0; 6]), errno(libc::EPERM), "syscall {nr}");
        }
        assert_eq!(libc::SYS_epoll_pwait, 22);
        assert_eq!(sys(22, [0; 6]), RET_ALLOW);
        // The special cases sit at their aarch64 numbers.
        assert_eq!(sys(435, [0; 6]), errno(libc::ENOSYS)); // clone3
        assert_eq!(sys(32, [3, 2, 0, 0, 0, 0]), errno(0)); // flock
        assert_eq!(
            sys(198, [AF_ALG as u64, 5, 0, 0, 0, 0]), // socket
            errno(libc::EAFNOSUPPORT)
        );
        assert_eq!(sys(29, [0, TIOCSTI as u64, 0, 0, 0, 0]), errno(libc::EPERM)); // ioctl
        assert_eq!(
            sys(25, [3, F_NOTIFY as u64, 0, 0, 0, 0]),
            errno(libc::EPERM)
        ); // fcntl
        let newuser = libc::CLONE_NEWUSER as u64;
        assert_eq!(sys(220, [newuser, 0, 0, 0, 0, 0]), errno(libc::EPERM)); // clone
    }

    /// Every name of the table has a number on x86_64; on aarch64 exactly the x86_64-only ones
    /// have none, and no two names share a number.
    #[test]
    fn the_table_numbers_the_calls_this_architecture_has() {
        let missing: Vec<&str> = ALLOWED
            .iter()
            .filter(|(_, n)| n.is_none())
            .map(|(name, _)| *name)
            .collect();
        #[cfg(target_arch = "x86_64")]
        assert_eq!(missing, Vec::<&str>::new());
        #[cfg(target_arch = "aarch64")]
        {
            for name in ["SYS_open", "SYS_stat", "SYS_fork", "SYS_dup2", "SYS_pipe"] {
                assert!(missing.contains(&name), "{name}");
            }
            assert_eq!(missing.len(), 37, "{missing:?}");
        }
        let mut numbers = allowed_numbers();
        let n = numbers.len();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), n, "two names share a number");
    }

    #[test]
    fn shared_file_locks_and_leases_are_refused() {
        assert_eq!(
            sys(libc::SYS_flock, [3, libc::LOCK_EX as u64, 0, 0, 0, 0]),
            errno(0)
        );
        assert_eq!(
            sys(libc::SYS_fcntl, [3, F_SETLEASE as u64, 1, 0, 0, 0]),
            errno(libc::EPERM)
        );
        assert_eq!(
            sys(libc::SYS_fcntl, [3, F_NOTIFY as u64, 1, 0, 0, 0]),
            errno(libc::EPERM)
        );
        assert_eq!(
            sys(libc::SYS_fcntl, [3, libc::F_SETLK as u64, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            sys(libc::SYS_fcntl, [3, libc::F_GETFL as u64, 0, 0, 0, 0]),
            RET_ALLOW
        );
    }

    #[test]
    fn personality_is_restricted() {
        assert_eq!(
            sys(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            sys(
                libc::SYS_personality,
                [0x0040_0000 /* READ_IMPLIES_EXEC */, 0, 0, 0, 0, 0]
            ),
            errno(libc::EPERM)
        );
    }

    /// What the Docker profile decides for one call, as libseccomp would: a matching rule's
    /// action (rules never overlap), else the default. None = allowed, Some(errno) = refused.
    fn profile_decides(profile: &serde_json::Value, name: &str, args: [u64; 6]) -> Option<i64> {
        for rule in profile["syscalls"].as_array().unwrap() {
            let names = rule["names"].as_array().unwrap();
            if !names.iter().any(|n| n == name) {
                continue;
            }
            let matches = rule["args"].as_array().is_none_or(|conds| {
                conds.iter().all(|c| {
                    let a = args[c["index"].as_u64().unwrap() as usize];
                    let v = c["value"].as_u64().unwrap();
                    match c["op"].as_str().unwrap() {
                        "SCMP_CMP_LT" => a < v,
                        "SCMP_CMP_EQ" => a == v,
                        "SCMP_CMP_GT" => a > v,
                        "SCMP_CMP_MASKED_EQ" => a & v == c["valueTwo"].as_u64().unwrap(),
                        op => panic!("unexpected op {op}"),
                    }
                })
            });
            if matches {
                return match rule["action"].as_str().unwrap() {
                    "SCMP_ACT_ALLOW" => None,
                    _ => Some(rule["errnoRet"].as_i64().unwrap()),
                };
            }
        }
        Some(profile["defaultErrnoRet"].as_i64().unwrap())
    }

    #[test]
    fn docker_profile_argument_rules_agree_with_the_native_filter_and_see_the_high_half() {
        let profile = docker_profile();
        let cases: [(&str, libc::c_long, usize, &[u32]); 3] = [
            (
                "socket",
                libc::SYS_socket,
                0,
                &[1, 2, 10, 16, 37, AF_ALG, 39, AF_VSOCK, 41, 44],
            ),
            (
                "ioctl",
                libc::SYS_ioctl,
                1,
                &[
                    0,
                    0x5401,
                    0x5411,
                    TIOCSTI,
                    0x5413,
                    TIOCLINUX,
                    0x541D,
                    0x8912,
                    u32::MAX,
                ],
            ),
            (
                "fcntl",
                libc::SYS_fcntl,
                1,
                &[0, 1, 4, 1023, F_SETLEASE, 1025, F_NOTIFY, 1027, 1031],
            ),
        ];
        for (name, nr, index, values) in cases {
            for &v in values {
                let mut args = [0u64; 6];
                args[index] = u64::from(v);
                let native = sys(nr, args);
                let docker = profile_decides(&profile, name, args);
                let native_allows = native == RET_ALLOW;
                assert_eq!(docker.is_none(), native_allows, "{name}({v:#x})");
                if !native_allows {
                    assert_eq!(
                        errno(docker.unwrap() as i32),
                        native,
                        "{name}({v:#x}) errno"
                    );
                }
                // The kernel truncates these to 32 bits: with the high half set, a refused
                // value stays refused (and the profile refuses every such call).
                args[index] = u64::from(v) | (1 << 32);
                assert!(
                    profile_decides(&profile, name, args).is_some(),
                    "{name}({v:#x} | 1<<32)"
                );
            }
        }
    }

    #[test]
    fn the_docker_profile_file_is_the_native_policy() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/seccomp.json");
        let want = serde_json::to_string_pretty(&docker_profile()).unwrap() + "\n";
        if std::env::var_os("ISOBOX_WRITE_PROFILES").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(have == want, "deploy/seccomp.json is stale: run `ISOBOX_WRITE_PROFILES=1 cargo test -p isobox-sandbox docker_profile`");
        let profile: serde_json::Value = serde_json::from_str(&have).unwrap();
        // Both architectures, each alone on its host (no i386, x32 or AArch32), and no
        // `architectures` list, which Docker refuses next to an archMap.
        assert_eq!(
            profile["archMap"],
            serde_json::json!([
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []},
            ])
        );
        assert!(profile.get("architectures").is_none());
        // Everything the native filter refuses is absent from the profile's allowlist.
        let allowed: Vec<String> = profile["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        for denied in [
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "setns",
            "unshare",
            "ptrace",
            "process_vm_readv",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "io_uring_setup",
            "io_setup",
            "io_submit",
            "inotify_init",
            "inotify_init1",
            "inotify_add_watch",
            "inotify_rm_watch",
            "fanotify_init",
            "fanotify_mark",
            "kexec_load",
            "init_module",
            "open_tree",
            "move_mount",
            "fsopen",
            "clone3",
            "flock",
        ] {
            assert!(!allowed.iter().any(|a| a == denied), "{denied} is allowed");
        }
        assert!(allowed.len() > 250);
    }

    #[test]
    fn fits_the_kernel_limit() {
        assert!(build_filter().len() < 4096);
    }

    /// The search tree decides exactly as the allowlist says, for every number.
    #[test]
    fn every_syscall_number_gets_the_allowlist_decision() {
        let prog = build_filter();
        let special = [
            libc::SYS_clone3,
            libc::SYS_clone,
            libc::SYS_socket,
            libc::SYS_ioctl,
            libc::SYS_flock,
            libc::SYS_fcntl,
            libc::SYS_personality,
        ];
        let allowed: std::collections::HashSet<u32> = allowed_numbers().into_iter().collect();
        let mut steps = Vec::new();
        for nr in 0..2048u32 {
            if special.iter().any(|s| *s as u32 == nr) {
                continue;
            }
            let want = if allowed.contains(&nr) {
                RET_ALLOW
            } else {
                errno(libc::EPERM)
            };
            assert_eq!(run(&prog, AUDIT_ARCH, nr, [0; 6]), want, "syscall {nr}");
            steps.push(path_len(&prog, nr));
        }
        // And in a few comparisons: the allowlist is not scanned linearly.
        let worst = *steps.iter().max().unwrap();
        assert!(worst < 40, "longest path {worst} instructions");
    }

    /// Instructions executed for syscall `nr` (no special arguments).
    fn path_len(prog: &[sock_filter], nr: u32) -> usize {
        let mut n = 0;
        let mut pc = 0usize;
        let mut acc = 0u32;
        loop {
            n += 1;
            let ins = prog[pc];
            match ins.code {
                c if c == BPF_LD | BPF_W | BPF_ABS => {
                    acc = match ins.k {
                        OFF_NR => nr,
                        OFF_ARCH => AUDIT_ARCH,
                        _ => 0,
                    };
                    pc += 1;
                }
                c if c == BPF_RET | BPF_K => return n,
                c => {
                    let taken = match c & 0xf0 {
                        BPF_JEQ => acc == ins.k,
                        BPF_JGE => acc >= ins.k,
                        _ => acc & ins.k != 0,
                    };
                    pc += 1 + if taken { ins.jt } else { ins.jf } as usize;
                }
            }
        }
    }
}
