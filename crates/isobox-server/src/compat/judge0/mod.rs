//! The Judge0 CE 1.13 compatible API, under `ISOBOX_JUDGE0_PREFIX` (default `/judge0`): a
//! Judge0 client changes only its base URL.
//!
//! - [`model`]: transport-free: Judge0's languages (ids) and statuses, a submission's fields
//!   checked as Judge0 checks them and turned into our `ExecuteRequest`, a job's record turned
//!   back into a Judge0 submission.
//! - [`files`]: `additional_files`, a base64 zip unpacked (bounded) into the request's files.
//! - [`handlers`]: the axum routes.
//!
//! Submissions are our async jobs (so a token is readable on any node sharing the job store);
//! a job keeps its Judge0 fields in its record's `compat` value. Everything passes the same
//! gate (Judge0's `X-Auth-Token` is taken as an API key), policy, limits and dedup cache as
//! the native API.

pub mod files;
pub mod handlers;
pub mod model;
pub mod openapi;
