//! `additional_files`: a zip archive unpacked into the request's files, within bounds. Judge0
//! unzips it in the sandbox (`unzip -n`: the source file is never overwritten); here it is
//! read in memory and every entry checked before anything runs: regular files and directories
//! only (no symlinks), relative names without `..`, at most `max_files` files, and the
//! uncompressed bytes (counted as they are read, whatever the archive claims) within `budget`.

use std::io::Read;

/// Most entries (directories included) an archive may list.
const MAX_ENTRIES: usize = 1024;

/// The archive's files as `(name, content)`, in archive order; `main` (the source's name) and
/// repeated names keep their first content. The error is the sentence of a field error.
pub fn unzip(
    bytes: &[u8],
    max_files: usize,
    budget: usize,
    main: &str,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|_| "is not a valid zip archive".to_string())?;
    if archive.len() > MAX_ENTRIES {
        return Err(format!(
            "has {} entries; at most {MAX_ENTRIES} are allowed",
            archive.len()
        ));
    }
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total = 0usize;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("entry {i} cannot be read: {e}"))?;
        let raw = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let shown: String = raw.chars().take(100).collect();
        if entry.encrypted() {
            return Err(format!("entry `{shown}` is encrypted"));
        }
        let mode = entry.unix_mode().unwrap_or(0);
        if entry.is_symlink() || mode & 0o170000 == 0o120000 {
            return Err(format!("entry `{shown}` is a symbolic link"));
        }
        let name = raw.trim_end_matches('/');
        let parts: Vec<&str> = name.split('/').collect();
        if name.is_empty()
            || raw.starts_with('/')
            || raw.contains('\\')
            || raw.contains('\0')
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(format!("entry `{shown}` has an unsafe path"));
        }
        if entry.is_dir() {
            continue;
        }
        let kind = mode & 0o170000;
        if kind != 0 && kind != 0o100000 {
            return Err(format!("entry `{shown}` is not a regular file"));
        }
        if name == main || out.iter().any(|(n, _)| n == name) {
            continue;
        }
        if out.len() >= max_files {
            return Err(format!(
                "has more than {max_files} files; at most {max_files} are allowed"
            ));
        }
        let left = budget.saturating_sub(total);
        if entry.size() > left as u64 {
            return Err(too_big(budget));
        }
        let mut content = Vec::with_capacity(entry.size() as usize);
        (&mut entry)
            .take(left as u64 + 1)
            .read_to_end(&mut content)
            .map_err(|_| format!("entry `{shown}` cannot be unpacked"))?;
        if content.len() > left {
            return Err(too_big(budget));
        }
        total += content.len();
        out.push((name.to_string(), content));
    }
    Ok(out)
}

fn too_big(budget: usize) -> String {
    format!("unpacks to more than {budget} bytes (with the source code); that is the most allowed")
}
