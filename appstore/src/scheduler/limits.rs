//! Resource limits of local instances: memory through a cgroup of its own when this machine
//! lets the App Store make one (cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`);
//! otherwise the instance runs unlimited and its log says so.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Puts process `pid` (and so its future children) into a memory cgroup for instance `id`
/// limited to `bytes`. Returns what was done, for the instance log.
pub fn limit_memory(id: &str, pid: u32, bytes: u64) -> String {
    match try_limit(Path::new(ROOT), id, pid, bytes) {
        Ok(how) => format!("memory limited to {bytes} bytes ({how})"),
        Err(e) => format!("memory limit of {bytes} bytes not applied: {e}"),
    }
}

/// Removes the instance's cgroup, once its processes are gone.
pub fn release(id: &str) {
    for dir in [v2_dir(Path::new(ROOT), id), v1_dir(Path::new(ROOT), id)] {
        let _ = std::fs::remove_dir(dir);
    }
}

fn v2_dir(root: &Path, id: &str) -> PathBuf {
    root.join("appstore").join(id)
}

fn v1_dir(root: &Path, id: &str) -> PathBuf {
    root.join("memory").join("appstore").join(id)
}

fn try_limit(root: &Path, id: &str, pid: u32, bytes: u64) -> std::io::Result<&'static str> {
    if root.join("cgroup.controllers").exists() {
        let parent = root.join("appstore");
        std::fs::create_dir_all(&parent)?;
        std::fs::write(parent.join("cgroup.subtree_control"), "+memory")?;
        let dir = v2_dir(root, id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("memory.max"), bytes.to_string())?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        Ok("cgroup v2")
    } else if root.join("memory").join("memory.limit_in_bytes").exists() {
        let dir = v1_dir(root, id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        Ok("cgroup v1")
    } else {
        Err(std::io::Error::other(
            "no writable memory cgroup on this machine",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_cgroups_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let e = try_limit(dir.path(), "i", 1, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("no writable memory cgroup"));
    }

    #[test]
    fn v1_hierarchies_get_the_limit_and_the_process() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("memory")).unwrap();
        std::fs::write(dir.path().join("memory/memory.limit_in_bytes"), "0").unwrap();
        assert_eq!(try_limit(dir.path(), "i", 42, 1024).unwrap(), "cgroup v1");
        let d = v1_dir(dir.path(), "i");
        assert_eq!(
            std::fs::read_to_string(d.join("memory.limit_in_bytes")).unwrap(),
            "1024"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("cgroup.procs")).unwrap(),
            "42"
        );
    }
}
