//! Starting FFmpeg: its room folder, its command, and the privileges it runs with.
//!
//! FFmpeg parses network input (RTP from taps); when the server runs as root it must not. It
//! runs as an unprivileged user (`--hls-ffmpeg-user`, default `nobody` with its primary group),
//! in a room folder owned by that user with mode 0700. The HLS root itself stays 0700 and the
//! server's: the child changes into the room folder while still root and drops privileges only
//! then (std's `Command::uid` would drop them before the `chdir`, which the private root would
//! refuse), so FFmpeg reaches its own folder by its working directory and nothing else.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::command::{ffmpeg_args, LOG_FILE, SDP_FILE};
use super::sdp::{sdp_text, PipelineStream};
use super::HlsConfig;

/// Creates the room folder (mode 0700, owned by FFmpeg's user when it has one of its own).
pub(crate) fn create_room_dir(dir: &Path, run_as: Option<(u32, u32)>) -> std::io::Result<()> {
    fs::create_dir(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Opens (creating it if needed) a file of the room folder the server writes itself. FFmpeg
/// owns that folder: had it planted a symlink there (say `ffmpeg.log` → `/etc/passwd`), the
/// server, as root, would write through it; `O_NOFOLLOW` refuses a symlink instead.
pub(crate) fn open_in_room(
    dir: &Path,
    name: &str,
    options: &mut OpenOptions,
) -> std::io::Result<File> {
    options
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(name))
}

/// Writes the SDP and starts FFmpeg in `dir` for `streams`.
pub(crate) fn spawn_ffmpeg(
    cfg: &HlsConfig,
    room_id: &str,
    dir: &Path,
    streams: &[PipelineStream],
    continuing: bool,
) -> std::io::Result<Child> {
    let mut sdp = open_in_room(dir, SDP_FILE, OpenOptions::new().write(true).truncate(true))?;
    sdp.write_all(sdp_text(room_id, streams).as_bytes())?;
    let log = open_in_room(dir, LOG_FILE, OpenOptions::new().append(true))?;
    let mut command = Command::new(&cfg.ffmpeg);
    command
        .args(ffmpeg_args(cfg, streams, continuing))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    child_setup(&mut command, cfg.run_as);
    command.spawn()
}

/// In the child, before exec: drop to `run_as`, die with the parent, default signal mask.
fn child_setup(command: &mut Command, run_as: Option<(u32, u32)>) {
    // SAFETY: the closure only calls setgroups, setgid, setuid, prctl, sigemptyset and
    // pthread_sigmask, which are async-signal-safe, on a zeroed sigset_t it owns.
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = run_as {
                // Any failure aborts the spawn: FFmpeg never runs with root's privileges.
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After the setuid: a credential change clears the parent-death signal.
            // FFmpeg must not outlive the server: SIGKILL it when the spawning thread dies.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The server blocks SIGINT/SIGTERM in its threads (a signal thread waits for
            // them); FFmpeg must not inherit that mask.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_the_server_writes_in_a_room_folder_are_never_opened_through_a_symlink() {
        let dir = std::env::temp_dir().join(format!("sfu-room-nofollow-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        create_room_dir(&dir, None).unwrap();
        let target = dir.join("target");
        fs::write(&target, "precious").unwrap();
        std::os::unix::fs::symlink(&target, dir.join(LOG_FILE)).unwrap();
        std::os::unix::fs::symlink(&target, dir.join(SDP_FILE)).unwrap();
        assert!(open_in_room(&dir, LOG_FILE, OpenOptions::new().append(true)).is_err());
        assert!(open_in_room(
            &dir,
            SDP_FILE,
            OpenOptions::new().write(true).truncate(true)
        )
        .is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        // A plain file is created and written.
        let mut f = open_in_room(&dir, "x.txt", OpenOptions::new().write(true)).unwrap();
        f.write_all(b"ok").unwrap();
        let _ = fs::remove_dir_all(&dir);
    }
}
