//! The seccomp-bpf filter installed in the payload as the very last step before `execve`.
//!
//! A default-deny allowlist in the spirit of Docker's default profile, built here as classic BPF
//! (no C library needed):
//! - a foreign architecture (i386 `int 0x80`) or an x32 syscall number kills the process;
//! - `clone3` answers `ENOSYS` (BPF cannot inspect its flags, so libc falls back to `clone`);
//! - `clone` with any namespace flag, `socket` for `AF_ALG`/`AF_VSOCK`, `ioctl(TIOCSTI)` and
//!   `ioctl(TIOCLINUX)` (compared on the low 32 bits only, CVE-2019-10063), `fcntl(F_SETLEASE)`
//!   and `fcntl(F_NOTIFY)` are refused; `flock` answers `ENOSYS` (no locks on shared files);
//! - mount, umount2, pivot_root, chroot, setns, unshare, ptrace, process_vm_*, keyctl, add_key,
//!   request_key, bpf, perf_event_open, userfaultfd, io_uring_*, kexec, modules, ... are simply
//!   not on the allowlist and get `EPERM`.

use libc::sock_filter;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the seccomp filter is written for x86_64 only");

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
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

/// Syscalls that are allowed with any arguments.
const ALLOWED: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_open,
    libc::SYS_close,
    libc::SYS_stat,
    libc::SYS_fstat,
    libc::SYS_lstat,
    libc::SYS_poll,
    libc::SYS_lseek,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_munmap,
    libc::SYS_brk,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_access,
    libc::SYS_pipe,
    libc::SYS_select,
    libc::SYS_sched_yield,
    libc::SYS_mremap,
    libc::SYS_msync,
    libc::SYS_mincore,
    libc::SYS_madvise,
    libc::SYS_shmget,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_dup,
    libc::SYS_dup2,
    libc::SYS_pause,
    libc::SYS_nanosleep,
    libc::SYS_getitimer,
    libc::SYS_alarm,
    libc::SYS_setitimer,
    libc::SYS_getpid,
    libc::SYS_sendfile,
    libc::SYS_connect,
    libc::SYS_accept,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_shutdown,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_socketpair,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_execve,
    libc::SYS_exit,
    libc::SYS_wait4,
    libc::SYS_kill,
    libc::SYS_uname,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semctl,
    libc::SYS_shmdt,
    libc::SYS_msgget,
    libc::SYS_msgsnd,
    libc::SYS_msgrcv,
    libc::SYS_msgctl,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_truncate,
    libc::SYS_ftruncate,
    libc::SYS_getdents,
    libc::SYS_getcwd,
    libc::SYS_chdir,
    libc::SYS_fchdir,
    libc::SYS_rename,
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_creat,
    libc::SYS_link,
    libc::SYS_unlink,
    libc::SYS_symlink,
    libc::SYS_readlink,
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_chown,
    libc::SYS_fchown,
    libc::SYS_lchown,
    libc::SYS_umask,
    libc::SYS_gettimeofday,
    libc::SYS_getrlimit,
    libc::SYS_getrusage,
    libc::SYS_sysinfo,
    libc::SYS_times,
    libc::SYS_getuid,
    libc::SYS_getgid,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_geteuid,
    libc::SYS_getegid,
    libc::SYS_setpgid,
    libc::SYS_getppid,
    libc::SYS_getpgrp,
    libc::SYS_setsid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_getgroups,
    libc::SYS_setgroups,
    libc::SYS_setresuid,
    libc::SYS_getresuid,
    libc::SYS_setresgid,
    libc::SYS_getresgid,
    libc::SYS_getpgid,
    libc::SYS_setfsuid,
    libc::SYS_setfsgid,
    libc::SYS_getsid,
    libc::SYS_capget,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_sigsuspend,
    libc::SYS_sigaltstack,
    libc::SYS_utime,
    libc::SYS_mknod,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_getpriority,
    libc::SYS_setpriority,
    libc::SYS_sched_setparam,
    libc::SYS_sched_getparam,
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_mlock,
    libc::SYS_munlock,
    libc::SYS_mlockall,
    libc::SYS_munlockall,
    libc::SYS_prctl,
    libc::SYS_arch_prctl,
    libc::SYS_setrlimit,
    libc::SYS_sync,
    libc::SYS_gettid,
    libc::SYS_readahead,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    libc::SYS_tkill,
    libc::SYS_time,
    libc::SYS_futex,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_getaffinity,
    libc::SYS_set_thread_area,
    libc::SYS_io_setup,
    libc::SYS_io_destroy,
    libc::SYS_io_getevents,
    libc::SYS_io_submit,
    libc::SYS_io_cancel,
    libc::SYS_get_thread_area,
    libc::SYS_epoll_create,
    libc::SYS_remap_file_pages,
    libc::SYS_getdents64,
    libc::SYS_set_tid_address,
    libc::SYS_restart_syscall,
    libc::SYS_semtimedop,
    libc::SYS_fadvise64,
    libc::SYS_timer_create,
    libc::SYS_timer_settime,
    libc::SYS_timer_gettime,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_delete,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_exit_group,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_ctl,
    libc::SYS_tgkill,
    libc::SYS_utimes,
    libc::SYS_mbind,
    libc::SYS_set_mempolicy,
    libc::SYS_get_mempolicy,
    libc::SYS_mq_open,
    libc::SYS_mq_unlink,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_notify,
    libc::SYS_mq_getsetattr,
    libc::SYS_waitid,
    libc::SYS_ioprio_set,
    libc::SYS_ioprio_get,
    libc::SYS_inotify_init,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    libc::SYS_openat,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_fchownat,
    libc::SYS_futimesat,
    libc::SYS_newfstatat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_readlinkat,
    libc::SYS_fchmodat,
    libc::SYS_faccessat,
    libc::SYS_pselect6,
    libc::SYS_ppoll,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_sync_file_range,
    libc::SYS_vmsplice,
    libc::SYS_utimensat,
    libc::SYS_epoll_pwait,
    libc::SYS_signalfd,
    libc::SYS_timerfd_create,
    libc::SYS_eventfd,
    libc::SYS_fallocate,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_accept4,
    libc::SYS_signalfd4,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_inotify_init1,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_recvmmsg,
    libc::SYS_prlimit64,
    libc::SYS_syncfs,
    libc::SYS_sendmmsg,
    libc::SYS_getcpu,
    libc::SYS_sched_setattr,
    libc::SYS_sched_getattr,
    libc::SYS_renameat2,
    libc::SYS_seccomp,
    libc::SYS_getrandom,
    libc::SYS_memfd_create,
    libc::SYS_execveat,
    libc::SYS_membarrier,
    libc::SYS_mlock2,
    libc::SYS_copy_file_range,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_pkey_mprotect,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_statx,
    libc::SYS_rseq,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pidfd_open,
    libc::SYS_close_range,
    libc::SYS_openat2,
    libc::SYS_faccessat2,
    libc::SYS_epoll_pwait2,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_restrict_self,
    libc::SYS_futex_waitv,
    452, // fchmodat2
];

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
    // Architecture: anything but x86_64 (e.g. i386 via int 0x80) is killed.
    p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH));
    p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
    p.push(stmt(BPF_RET | BPF_K, RET_KILL_PROCESS));
    // x32 ABI numbers (bit 30) are killed too.
    p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR));
    p.push(jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1));
    p.push(stmt(BPF_RET | BPF_K, RET_KILL_PROCESS));

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
    // flock on the read-only files every sandbox shares (/usr, /etc) would let runs block each
    // other and the host: ENOSYS, which runtimes (Go, Python) treat as "locking unsupported".
    push_case(
        &mut p,
        libc::SYS_flock as u32,
        vec![stmt(BPF_RET | BPF_K, errno(libc::ENOSYS))],
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

    // The plain allowlist, in syscall-number order (the hot, low numbers are checked first).
    let mut allowed: Vec<u32> = ALLOWED.iter().map(|n| *n as u32).collect();
    allowed.sort_unstable();
    allowed.dedup();
    p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR));
    for nr in allowed {
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1));
        p.push(stmt(BPF_RET | BPF_K, RET_ALLOW));
    }
    // Everything else: EPERM.
    p.push(stmt(BPF_RET | BPF_K, errno(libc::EPERM)));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

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
        run(&build_filter(), AUDIT_ARCH_X86_64, nr as u32, args)
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
    fn foreign_arch_and_x32_are_killed() {
        let p = build_filter();
        assert_eq!(
            run(&p, 0x4000_0003 /* AUDIT_ARCH_I386 */, 20, [0; 6]),
            RET_KILL_PROCESS
        );
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 39, [0; 6]),
            RET_KILL_PROCESS
        );
    }

    #[test]
    fn shared_file_locks_and_leases_are_refused() {
        assert_eq!(
            sys(libc::SYS_flock, [3, libc::LOCK_EX as u64, 0, 0, 0, 0]),
            errno(libc::ENOSYS)
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

    #[test]
    fn fits_the_kernel_limit() {
        assert!(build_filter().len() < 4096);
    }
}
