//! The integration tests, built as one test binary (`it`) instead of one per file: a change to a
//! crate relinks one binary, not two dozen. Each `tests/<name>.rs` is the module `<name>` here and
//! stays where it was (SECURITY.md cites tests by file, `tests/<name>.rs::<test>`, and
//! `security_doc` checks that those files and tests exist); `common/` holds the shared helpers.
//!
//! Run them with cargo-nextest, as scripts/test does: it runs every test in a process of its own,
//! which these tests rely on (a per-process executor and docker instance, cgroups and temp dirs
//! named after the pid, checks of this process's fds, threads and children, `TMPDIR` set by the
//! soak test). A test's name is `<module>::<test>`, so a file's tests are
//! `cargo nextest run --test it -E 'test(/^hostile::/)'`.

mod common;

mod architecture;
mod auth;
mod browser;
mod cgroup_v2;
mod cli;
mod cluster;
mod collect;
mod conformance;
mod deploy_files;
mod deploy_yaml;
mod docker;
mod examples;
mod grpc;
mod hardening;
mod hostile;
mod judge0;
mod judging;
mod languages;
mod leak_check;
mod observability;
mod package;
mod piston;
mod playground;
mod readme;
mod rootfs_dir;
mod runtimes;
mod security_doc;
mod serve_cli;
mod server;
mod smoke;
mod soak;
mod streaming;
mod warm_pool;
