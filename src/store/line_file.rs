//! A file of one record per line beside the store, appended to as records
//! arrive and replaced whole (through a temporary file and a rename) when
//! it is compacted: what the tag index and the event log keep on disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file, once bound to a path; until then appends and replaces are
/// no-ops (an index or log kept in memory only).
#[derive(Debug, Default)]
pub struct LineFile {
    state: Mutex<Option<(PathBuf, Option<File>)>>,
}

impl LineFile {
    /// Writes to `path` from now on.
    pub fn bind(&self, path: &Path) {
        if let Ok(mut state) = self.state.lock() {
            *state = Some((path.to_path_buf(), None));
        }
    }

    /// Appends `line` (and a newline), opening the file on first use.
    pub fn append(&self, line: &str) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let Some((path, handle)) = state.as_mut() else {
            return;
        };
        if handle.is_none() {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            *handle = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&*path)
                .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "cannot open for appending"))
                .ok();
        }
        if let Some(file) = handle.as_mut() {
            if let Err(e) = writeln!(file, "{line}") {
                tracing::warn!(path = %path.display(), error = %e, "cannot append");
            }
        }
    }

    /// Replaces the whole file, atomically, with the lines `lines` gives;
    /// it is called under the file's lock, so no append slips between
    /// reading the records and replacing the file.
    pub fn replace(&self, lines: impl FnOnce() -> Vec<String>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let Some((path, handle)) = state.as_mut() else {
            return;
        };
        let Some(dir) = path.parent() else {
            return;
        };
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| tempfile::NamedTempFile::new_in(dir))
            .and_then(|mut tmp| {
                for line in lines() {
                    writeln!(tmp, "{line}")?;
                }
                tmp.persist(&*path).map_err(|e| e.error)?;
                Ok(())
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot rewrite");
        }
        // The old handle points at the replaced file.
        *handle = None;
    }
}
