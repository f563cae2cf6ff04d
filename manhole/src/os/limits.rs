//! The limits this process runs under, as far as it can tell: its cgroup's
//! memory limit and CPU quota, and `RLIMIT_NOFILE`.
//!
//! cgroup v2 (`memory.max`, `cpu.max`) is read where `/sys/fs/cgroup` is a
//! v2 mount; otherwise the v1 `memory` and `cpu` hierarchies
//! (`memory.limit_in_bytes`, `cpu.cfs_quota_us` / `cpu.cfs_period_us`).
//! A limit set on an ancestor cgroup binds too, so the directories from the
//! process's own cgroup up to the mount are read and the smallest limit
//! wins. A limit that is absent, unlimited or unreadable is `None`: `info`
//! leaves it out rather than guess.

use std::path::{Path, PathBuf};

/// What [`read`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Limits {
    /// `v1` or `v2`, and the process's cgroup path, when a cgroup limit was
    /// read.
    pub(crate) cgroup: Option<(u8, String)>,
    pub(crate) memory_bytes: Option<u64>,
    /// The CPU quota as cores: quota divided by period.
    pub(crate) cpu_cores: Option<f64>,
    /// `RLIMIT_NOFILE`'s soft and hard limits; `None` for unlimited.
    pub(crate) open_files: Option<(Option<u64>, Option<u64>)>,
}

/// The limits of this process.
pub(crate) fn read() -> Limits {
    let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut limits = cgroup_limits(&membership, Path::new("/sys/fs/cgroup"));
    limits.open_files = open_files();
    limits
}

fn open_files() -> Option<(Option<u64>, Option<u64>)> {
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
    let finite = |limit: u64| (limit != nix::sys::resource::RLIM_INFINITY).then_some(limit);
    Some((finite(soft), finite(hard)))
}

/// The cgroup limits for the membership lines of `/proc/self/cgroup`, with
/// the cgroup filesystem mounted at `root`.
pub(crate) fn cgroup_limits(membership: &str, root: &Path) -> Limits {
    if root.join("cgroup.controllers").exists() {
        if let Some(path) = membership.lines().find_map(|line| line.strip_prefix("0::")) {
            let dirs = own_and_ancestors(root, path);
            let memory = smallest(&dirs, "memory.max", parse_max_bytes);
            let cpu = smallest(&dirs, "cpu.max", parse_cpu_max);
            return Limits {
                cgroup: (memory.is_some() || cpu.is_some()).then(|| (2, path.to_owned())),
                memory_bytes: memory,
                cpu_cores: cpu,
                open_files: None,
            };
        }
    }
    // v1: `ID:controller[,controller]:path`, one hierarchy per line.
    let hierarchy = |controller: &str| {
        membership.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|name| name == controller)
                .then(|| (controllers.to_owned(), path.to_owned()))
        })
    };
    let mut limits = Limits::default();
    let mut path_read = None;
    if let Some((mount, path)) = hierarchy("memory") {
        let dirs = v1_dirs(root, &mount, &path);
        limits.memory_bytes = smallest(&dirs, "memory.limit_in_bytes", parse_v1_bytes);
        if limits.memory_bytes.is_some() {
            path_read = Some(path);
        }
    }
    if let Some((mount, path)) = hierarchy("cpu") {
        let dirs = v1_dirs(root, &mount, &path);
        limits.cpu_cores = dirs
            .iter()
            .filter_map(|dir| {
                let quota = read_number(&dir.join("cpu.cfs_quota_us"))?;
                let period = read_number(&dir.join("cpu.cfs_period_us"))?;
                // A quota of -1 is no quota.
                (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
            })
            .reduce(f64::min);
        if limits.cpu_cores.is_some() && path_read.is_none() {
            path_read = Some(path);
        }
    }
    limits.cgroup = path_read.map(|path| (1, path));
    limits
}

fn read_number(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The v1 directories of a hierarchy mounted at `root/<controllers>` (or,
/// as some systems name it, `root/<controller>`), from the process's own
/// cgroup up. Inside a container the path may name the host's cgroup,
/// which the container sees as its mount's root; then the root alone is
/// read.
fn v1_dirs(root: &Path, controllers: &str, path: &str) -> Vec<PathBuf> {
    let mount = [
        controllers,
        controllers.split(',').next().unwrap_or_default(),
    ]
    .iter()
    .map(|name| root.join(name))
    .find(|mount| mount.is_dir());
    let Some(mount) = mount else {
        return Vec::new();
    };
    let dirs = own_and_ancestors(&mount, path);
    if dirs.first().is_some_and(|dir| dir.is_dir()) {
        dirs
    } else {
        vec![mount]
    }
}

/// `root/path`, then each parent up to and including `root`.
fn own_and_ancestors(root: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut dir = root.join(path.trim_start_matches('/'));
    loop {
        dirs.push(dir.clone());
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            break;
        }
    }
    dirs
}

/// The smallest limit that `parse` finds in `file` in any of `dirs`.
fn smallest<T: PartialOrd>(
    dirs: &[PathBuf],
    file: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    dirs.iter()
        .filter_map(|dir| parse(&std::fs::read_to_string(dir.join(file)).ok()?))
        .reduce(|a, b| if b < a { b } else { a })
}

/// `memory.max`: a number of bytes, or `max`.
fn parse_max_bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `cpu.max`: `QUOTA PERIOD` in microseconds, or `max PERIOD`.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    let quota: f64 = words.next()?.parse().ok()?;
    let period: f64 = words.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// `memory.limit_in_bytes`: v1 writes "unlimited" as the largest multiple
/// of the page size below `i64::MAX`.
fn parse_v1_bytes(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < 1 << 62).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "manhole-cgroup-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        for (path, content) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        root
    }

    #[test]
    fn v2_limits_take_the_smallest_of_the_cgroup_and_its_ancestors() {
        let root = tree(&[
            ("cgroup.controllers", "cpu memory\n"),
            ("app.slice/memory.max", "1073741824\n"),
            ("app.slice/cpu.max", "max 100000\n"),
            ("app.slice/svc/memory.max", "max\n"),
            ("app.slice/svc/cpu.max", "150000 100000\n"),
        ]);
        let limits = cgroup_limits("0::/app.slice/svc\n", &root);
        assert_eq!(limits.memory_bytes, Some(1 << 30));
        assert_eq!(limits.cpu_cores, Some(1.5));
        assert_eq!(limits.cgroup, Some((2, "/app.slice/svc".to_owned())));
        let unlimited = tree(&[
            ("cgroup.controllers", "cpu memory\n"),
            ("memory.max", "max\n"),
            ("cpu.max", "max 100000\n"),
        ]);
        assert_eq!(cgroup_limits("0::/\n", &unlimited), Limits::default());
        let _ = std::fs::remove_dir_all(root);
        let _ = std::fs::remove_dir_all(unlimited);
    }

    #[test]
    fn v1_limits_are_read_from_their_hierarchies() {
        let root = tree(&[
            ("memory/job/memory.limit_in_bytes", "536870912\n"),
            ("memory/memory.limit_in_bytes", "9223372036854771712\n"),
            ("cpu,cpuacct/job/cpu.cfs_quota_us", "50000\n"),
            ("cpu,cpuacct/job/cpu.cfs_period_us", "100000\n"),
            ("cpu,cpuacct/cpu.cfs_quota_us", "-1\n"),
            ("cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
        ]);
        let membership = "4:memory:/job\n3:cpu,cpuacct:/job\n0::/\n";
        let limits = cgroup_limits(membership, &root);
        assert_eq!(limits.memory_bytes, Some(512 << 20));
        assert_eq!(limits.cpu_cores, Some(0.5));
        assert_eq!(limits.cgroup, Some((1, "/job".to_owned())));
        // Unlimited everywhere: nothing to report.
        let limits = cgroup_limits("4:memory:/\n3:cpu,cpuacct:/\n", &root);
        assert_eq!(limits, Limits::default());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn open_files_come_from_getrlimit() {
        let (soft, _) = open_files().unwrap();
        assert!(soft.is_none_or(|soft| soft >= 3));
    }
}
