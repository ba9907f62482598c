//! The HLS root folder and who FFmpeg runs as.
//!
//! The server creates, writes and deletes per-room folders under the root, as root on many
//! hosts. A root in a shared, predictable place (`/tmp/sfu-hls`) could be pre-created or swapped
//! for a symlink by another local user, turning those writes and deletions against other files.
//! So the root is private: created with mode 0700, and refused when it is a symlink, owned by
//! someone else, or writable by group or others. Without `--hls-root` each process gets a fresh
//! folder (under `$XDG_RUNTIME_DIR` when that is a private folder of ours, else the temp dir),
//! created atomically (it must not exist yet) and deleted at exit.

use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The checked root; a fresh one is deleted by [`HlsRoot::cleanup`] (also on drop, which in
/// `main` comes after the signaling loop and its FFmpeg children are gone).
#[derive(Debug)]
pub struct HlsRoot {
    pub path: PathBuf,
    fresh: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HlsRootError {
    #[error(
        "HLS root {0} is a symlink; point --hls-root (SFU_HLS_ROOT) at a real folder of the \
         server's user, or leave it unset for a fresh private one"
    )]
    Symlink(PathBuf),
    #[error("HLS root {0} exists but is not a folder; choose another --hls-root")]
    NotADirectory(PathBuf),
    #[error(
        "HLS root {path} belongs to uid {owner}, not to the server's uid {ours}; chown it, \
         choose another --hls-root, or leave it unset for a fresh private one"
    )]
    Owner {
        path: PathBuf,
        owner: u32,
        ours: u32,
    },
    #[error(
        "HLS root {path} is writable by group or others (mode {mode:o}); `chmod 700` it or \
         choose another --hls-root"
    )]
    Writable { path: PathBuf, mode: u32 },
    #[error("cannot create HLS root {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot inspect HLS root {path}: {source}")]
    Inspect {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl HlsRoot {
    /// `explicit` (created 0700 when missing, else checked), or a fresh private folder.
    pub fn prepare(explicit: Option<&Path>) -> Result<HlsRoot, HlsRootError> {
        match explicit {
            Some(path) => {
                let path = path.to_path_buf();
                match fs::symlink_metadata(&path) {
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                            fs::create_dir_all(parent).map_err(|source| HlsRootError::Create {
                                path: path.clone(),
                                source,
                            })?;
                        }
                        create_private(&path)?;
                    }
                    Err(source) => return Err(HlsRootError::Inspect { path, source }),
                    Ok(_) => {}
                }
                check_private(&path)?;
                Ok(HlsRoot { path, fresh: false })
            }
            None => {
                let base = std::env::var_os("XDG_RUNTIME_DIR")
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute() && check_private(p).is_ok())
                    .unwrap_or_else(std::env::temp_dir);
                fresh_under(&base)
            }
        }
    }

    /// Deletes a fresh root (an explicit one is the operator's and stays).
    pub fn cleanup(&self) {
        if self.fresh {
            if let Err(e) = fs::remove_dir_all(&self.path) {
                if e.kind() != ErrorKind::NotFound {
                    tracing::warn!(dir = %self.path.display(), error = %e, "HLS root not deleted");
                }
            }
        }
    }
}

impl Drop for HlsRoot {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A new folder `sfu-hls-<pid>-<random>` under `base`; mkdir fails on anything already there
/// (a planted folder or symlink), so a name is never reused.
fn fresh_under(base: &Path) -> Result<HlsRoot, HlsRootError> {
    let mut last = None;
    for _ in 0..8 {
        let name = format!(
            "sfu-hls-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let path = base.join(name);
        match create_private(&path) {
            Ok(()) => {
                check_private(&path)?;
                return Ok(HlsRoot { path, fresh: true });
            }
            Err(HlsRootError::Create { source, .. })
                if source.kind() == ErrorKind::AlreadyExists =>
            {
                last = Some(source);
            }
            Err(e) => return Err(e),
        }
    }
    Err(HlsRootError::Create {
        path: base.to_path_buf(),
        source: last.unwrap_or_else(|| std::io::Error::other("no free name")),
    })
}

fn create_private(path: &Path) -> Result<(), HlsRootError> {
    let create = |source| HlsRootError::Create {
        path: path.to_path_buf(),
        source,
    };
    DirBuilder::new().mode(0o700).create(path).map_err(create)?;
    // The umask may only have narrowed it; make it exactly 0700.
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(create)
}

/// Not a symlink, a folder, ours, and not writable by group or others.
fn check_private(path: &Path) -> Result<(), HlsRootError> {
    let meta = fs::symlink_metadata(path).map_err(|source| HlsRootError::Inspect {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(HlsRootError::Symlink(path.to_path_buf()));
    }
    if !meta.is_dir() {
        return Err(HlsRootError::NotADirectory(path.to_path_buf()));
    }
    // SAFETY: geteuid has no preconditions.
    let ours = unsafe { libc::geteuid() };
    if meta.uid() != ours {
        return Err(HlsRootError::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            ours,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(HlsRootError::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Who FFmpeg runs as: `Some((uid, gid))` of `user` when the server runs as root, `None`
/// otherwise (it then runs as the server's own user). An empty `user` keeps root (not advised).
pub fn ffmpeg_identity(user: &str) -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || user.is_empty() {
        return Ok(None);
    }
    let name = std::ffi::CString::new(user)
        .map_err(|_| format!("--hls-ffmpeg-user {user:?} contains a NUL byte"))?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getpwnam_r writes only into pwd and buf.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return Err(format!(
            "--hls-ffmpeg-user {user:?} does not exist; FFmpeg must not run as root: create the \
             user or name another one (SFU_HLS_FFMPEG_USER)"
        ));
    }
    if pwd.pw_uid == 0 {
        return Ok(None);
    }
    Ok(Some((pwd.pw_uid, pwd.pw_gid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sfu-root-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_file(&dir);
        dir
    }

    #[test]
    fn a_fresh_root_is_a_new_0700_folder_deleted_by_cleanup() {
        let base = scratch("fresh");
        fs::create_dir_all(&base).unwrap();
        let root = fresh_under(&base).unwrap();
        let meta = fs::symlink_metadata(&root.path).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o777, 0o700);
        let other = fresh_under(&base).unwrap();
        assert_ne!(root.path, other.path);
        root.cleanup();
        assert!(!root.path.exists());
        other.cleanup();
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn an_explicit_root_is_created_0700_and_kept_by_cleanup() {
        let dir = scratch("explicit");
        let root = HlsRoot::prepare(Some(&dir)).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        root.cleanup();
        assert!(dir.exists());
        // An existing private folder is accepted as it is.
        HlsRoot::prepare(Some(&dir)).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_symlinked_or_world_writable_root_is_refused_with_what_to_do() {
        let target = scratch("target");
        fs::create_dir_all(&target).unwrap();
        let link = scratch("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = HlsRoot::prepare(Some(&link)).unwrap_err();
        assert!(matches!(err, HlsRootError::Symlink(_)), "{err}");
        assert!(err.to_string().contains("--hls-root"), "{err}");
        fs::set_permissions(&target, fs::Permissions::from_mode(0o777)).unwrap();
        let err = HlsRoot::prepare(Some(&target)).unwrap_err();
        assert!(matches!(err, HlsRootError::Writable { .. }), "{err}");
        let _ = fs::remove_file(&link);
        let _ = fs::remove_dir_all(&target);
    }
}
