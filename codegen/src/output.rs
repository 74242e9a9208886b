//! Atomic output sets: a command that writes several files (graph + tensors, C header
//! + source, model + data) writes them all or none.
//!
//! [`OutputSet::new`] makes a hidden staging directory inside the target directory
//! (creating the target directory and its missing parents first);
//! every file is written there under its final name ([`OutputSet::write`],
//! [`OutputSet::write_with`] for streamed outputs), so a post-check can load the staged
//! files as they will be ([`OutputSet::staged`]). [`OutputSet::commit`] then renames
//! them into place (a rename within one file system). A failure before the commit —
//! any error, or the set dropped — removes the staging directory and the directories
//! the set created, and leaves the target directory as it was; a rename that fails during the commit puts back every file
//! already replaced (from a hard link, or a copy, made before the first rename), so an
//! old set is never left half replaced.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Failure to write an output set; the message names the file and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct OutputError {
    /// The output file (or directory) concerned.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

impl OutputError {
    fn new(path: &Path, message: impl Into<String>) -> Self {
        OutputError {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Files staged for one directory, renamed into place together by [`OutputSet::commit`].
#[derive(Debug)]
pub struct OutputSet {
    dir: PathBuf,
    /// `None` only while the set is dropped.
    staging: Option<tempfile::TempDir>,
    names: Vec<String>,
    /// The directories [`OutputSet::new`] created, deepest first: removed again (when
    /// empty) unless the set is committed.
    created: Vec<PathBuf>,
}

impl OutputSet {
    /// Starts a set of files for `dir` (created if missing; `""` is the current
    /// directory).
    pub fn new(dir: &Path) -> Result<Self, OutputError> {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
        let created: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && std::fs::symlink_metadata(a).is_err())
            .map(Path::to_path_buf)
            .collect();
        let remove_created = |created: &[PathBuf]| {
            for d in created {
                let _ = std::fs::remove_dir(d);
            }
        };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            remove_created(&created);
            return Err(OutputError::new(
                &dir,
                format!("cannot create directory: {e}"),
            ));
        }
        let staging = tempfile::Builder::new()
            .prefix(".irnn-out-")
            .tempdir_in(&dir)
            .map_err(|e| {
                remove_created(&created);
                OutputError::new(&dir, format!("cannot create a temporary directory: {e}"))
            })?;
        Ok(OutputSet {
            dir,
            staging: Some(staging),
            names: Vec::new(),
            created,
        })
    }

    /// Starts a set for the directory of `file` (a path with a file name).
    pub fn for_file(file: &Path) -> Result<Self, OutputError> {
        Self::new(file.parent().unwrap_or(Path::new("")))
    }

    /// The target directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the file `name` will be once committed.
    pub fn destination(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The staged copy of `name` (for post-checks before the commit).
    pub fn staged(&self, name: &str) -> PathBuf {
        self.staging_dir().join(name)
    }

    fn staging_dir(&self) -> &Path {
        self.staging.as_ref().expect("staging directory").path()
    }

    /// Stages `bytes` as the file `name` of the target directory.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), OutputError> {
        self.write_with(name, |w| w.write_all(bytes))
    }

    /// Stages the file `name`, its contents written by `fill` (buffered, so a
    /// large output can be streamed). An error from `fill` fails the whole set.
    pub fn write_with(
        &mut self,
        name: &str,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), OutputError> {
        let dest = self.destination(name);
        let plain = Path::new(name)
            .file_name()
            .is_some_and(|f| f == std::ffi::OsStr::new(name));
        if !plain || name.starts_with('.') {
            return Err(OutputError::new(&dest, "not a plain file name"));
        }
        if self.names.iter().any(|n| n == name) {
            return Err(OutputError::new(&dest, "written twice in one output set"));
        }
        let staged = self.staged(name);
        let fail = |e: std::io::Error| OutputError::new(&dest, format!("cannot write: {e}"));
        let file = std::fs::File::create(&staged).map_err(fail)?;
        let mut w = std::io::BufWriter::new(file);
        fill(&mut w).map_err(fail)?;
        let file = w.into_inner().map_err(|e| fail(e.into_error()))?;
        crate::util::make_world_readable(&file).map_err(fail)?;
        file.sync_all().ok();
        self.names.push(name.to_string());
        Ok(())
    }

    /// Renames every staged file into the target directory. Refuses (changing
    /// nothing) when a destination exists and is not a regular file; when a rename
    /// fails, restores the files already replaced and removes the new ones.
    /// Returns the destination paths.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, OutputError> {
        let backups = self.staging_dir().join(".old");
        std::fs::create_dir(&backups)
            .map_err(|e| OutputError::new(&self.dir, format!("cannot stage: {e}")))?;
        // Every check first: nothing is renamed unless every destination can be replaced.
        let mut had_old = Vec::with_capacity(self.names.len());
        for name in &self.names {
            let dest = self.destination(name);
            match std::fs::symlink_metadata(&dest) {
                Ok(m) if m.file_type().is_file() => {
                    let keep = backups.join(name);
                    if std::fs::hard_link(&dest, &keep).is_err() {
                        std::fs::copy(&dest, &keep).map_err(|e| {
                            OutputError::new(&dest, format!("cannot keep the old file: {e}"))
                        })?;
                    }
                    had_old.push(true);
                }
                Ok(_) => {
                    return Err(OutputError::new(
                        &dest,
                        "exists and is not a regular file; nothing was written",
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => had_old.push(false),
                Err(e) => return Err(OutputError::new(&dest, format!("cannot check: {e}"))),
            }
        }
        for (i, name) in self.names.iter().enumerate() {
            let dest = self.destination(name);
            if let Err(e) = std::fs::rename(self.staged(name), &dest) {
                // Put back what was already replaced.
                for (done, old) in self.names[..i].iter().zip(&had_old) {
                    let d = self.destination(done);
                    if *old {
                        let _ = std::fs::rename(backups.join(done), &d);
                    } else {
                        let _ = std::fs::remove_file(&d);
                    }
                }
                return Err(OutputError::new(
                    &dest,
                    format!("cannot write: {e}; no file of the set was changed"),
                ));
            }
        }
        self.created.clear();
        Ok(self.names.iter().map(|n| self.destination(n)).collect())
    }
}

impl Drop for OutputSet {
    /// Removes the staging directory, then (unless committed) the directories the set
    /// created, when they are empty.
    fn drop(&mut self) {
        drop(self.staging.take());
        for d in &self.created {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn commit_writes_all_files() {
        let d = tempfile::tempdir().unwrap();
        let mut set = OutputSet::new(&d.path().join("sub")).unwrap();
        set.write("a.h", b"A").unwrap();
        set.write_with("b.c", |w| w.write_all(b"B")).unwrap();
        assert_eq!(std::fs::read(set.staged("a.h")).unwrap(), b"A");
        let paths = set.commit().unwrap();
        assert_eq!(paths.len(), 2);
        assert_eq!(leftovers(&d.path().join("sub")), ["a.h", "b.c"]);
        assert_eq!(std::fs::read(d.path().join("sub/b.c")).unwrap(), b"B");
    }

    #[test]
    fn an_uncommitted_set_removes_the_directories_it_created() {
        let d = tempfile::tempdir().unwrap();
        let mut set = OutputSet::new(&d.path().join("new/deep")).unwrap();
        set.write("a.h", b"A").unwrap();
        assert!(set.write("../b.c", b"B").is_err());
        drop(set);
        assert!(leftovers(d.path()).is_empty());
        // A directory that was there stays, and a committed set keeps what it made.
        std::fs::create_dir(d.path().join("old")).unwrap();
        drop(OutputSet::new(&d.path().join("old/sub")).unwrap());
        assert_eq!(leftovers(d.path()), ["old"]);
        assert!(leftovers(&d.path().join("old")).is_empty());
        let mut set = OutputSet::new(&d.path().join("new/deep")).unwrap();
        set.write("a.h", b"A").unwrap();
        set.commit().unwrap();
        assert_eq!(leftovers(&d.path().join("new/deep")), ["a.h"]);
    }

    #[test]
    fn a_failed_fill_or_a_drop_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.h"), b"old").unwrap();
        let mut set = OutputSet::new(d.path()).unwrap();
        set.write("a.h", b"new").unwrap();
        let e = set
            .write_with("b.c", |_| Err(std::io::Error::other("disk full")))
            .unwrap_err();
        assert!(
            e.to_string().contains("b.c: cannot write: disk full"),
            "{e}"
        );
        drop(set);
        assert_eq!(leftovers(d.path()), ["a.h"]);
        assert_eq!(std::fs::read(d.path().join("a.h")).unwrap(), b"old");
    }

    #[test]
    fn a_directory_in_the_way_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.h"), b"old").unwrap();
        std::fs::create_dir(d.path().join("b.c")).unwrap();
        let mut set = OutputSet::new(d.path()).unwrap();
        set.write("a.h", b"new").unwrap();
        set.write("b.c", b"new").unwrap();
        let e = set.commit().unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert_eq!(leftovers(d.path()), ["a.h", "b.c"]);
        assert_eq!(std::fs::read(d.path().join("a.h")).unwrap(), b"old");
    }

    #[test]
    fn a_failed_rename_restores_the_old_set() {
        // The third rename fails after two succeeded (its staged file is gone, as
        // after a race the checks cannot see): the first two must be undone.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.h"), b"old").unwrap();
        let mut set = OutputSet::new(d.path()).unwrap();
        set.write("a.h", b"new").unwrap();
        set.write("new.c", b"new").unwrap();
        set.write("z.c", b"new").unwrap();
        std::fs::remove_file(set.staged("z.c")).unwrap();
        let e = set.commit().unwrap_err();
        assert!(
            e.to_string().contains("no file of the set was changed"),
            "{e}"
        );
        assert_eq!(leftovers(d.path()), ["a.h"]);
        assert_eq!(std::fs::read(d.path().join("a.h")).unwrap(), b"old");
    }

    #[test]
    fn names_must_be_plain() {
        let d = tempfile::tempdir().unwrap();
        let mut set = OutputSet::new(d.path()).unwrap();
        for bad in ["../x", "a/b", ".hidden", ""] {
            assert!(set.write(bad, b"x").is_err(), "{bad}");
        }
        set.write("x", b"1").unwrap();
        assert!(set.write("x", b"2").is_err());
    }
}
