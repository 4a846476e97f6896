//! The data dir holds the registry (token and device-secret hashes), the
//! write-ahead log and the Parquet files: readings and alarms of every
//! region. Only the engine's user may read it: folders 0700, files 0600.
//!
//! New files get that from the process umask (`main` sets 077); a dir that
//! an older version or a person left readable is made private at start,
//! with a warning, rather than refused: refusing would stop an upgrade for
//! a mode the engine can fix itself.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use tracing::warn;

/// Creates `dir` (0700) if missing and makes everything under it private.
/// Symbolic links are left alone (and not followed).
pub(crate) fn secure(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let mut fixed = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            for entry in
                fs::read_dir(&path).with_context(|| format!("cannot list {}", path.display()))?
            {
                stack.push(entry?.path());
            }
        } else if !meta.is_file() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            // The owner keeps its own bits; group and others lose theirs.
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o700))
                .with_context(|| format!("cannot make {} private", path.display()))?;
            fixed += 1;
        }
    }
    if fixed > 0 {
        warn!(
            dir = %dir.display(),
            fixed,
            "The data dir had files or folders other users could read; made them private (0700 folders, 0600 files)."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_data_dir_is_made_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        secure(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        fs::create_dir(dir.join("store")).unwrap();
        fs::set_permissions(dir.join("store"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("store/wal-1"), b"x").unwrap();
        fs::set_permissions(dir.join("store/wal-1"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(dir.join("registry.json"), b"{}").unwrap();
        fs::set_permissions(dir.join("registry.json"), fs::Permissions::from_mode(0o666)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).unwrap();
        secure(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("store")), 0o700);
        assert_eq!(mode(&dir.join("store/wal-1")), 0o600);
        assert_eq!(mode(&dir.join("registry.json")), 0o600);
        assert_ne!(
            mode(Path::new("/etc/hostname")) & 0o044,
            0,
            "a link's target is not touched"
        );
    }
}
