//! Where and when the benchmark ran: CPU, cores, kernel, OS, load, the tracer's commit, and
//! who else was on the machine. Read once at the start (load again at the end).

/// Where and when the benchmark ran.
pub struct Machine {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub os: String,
    pub mem_total: String,
    pub load_at_start: String,
    pub load_at_end: String,
    /// Other people's tracers that may watch this lab when the run starts.
    pub other_tracers: usize,
    pub other_netns: usize,
    pub commit: String,
}

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(prefix)).map(|v| {
        v.trim_start_matches([' ', '\t', ':', '='])
            .trim_matches('"')
            .trim()
            .to_string()
    })
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

impl Machine {
    pub fn read(root: &std::path::Path) -> Machine {
        let run = |p: &str, a: &[&str]| {
            lab::cmd::run(p, a)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into())
        };
        let root = root.to_string_lossy();
        let mut commit = run("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
        let dirty = run(
            "git",
            &[
                "-C",
                &root,
                "status",
                "--porcelain",
                "--",
                "tracer",
                "tracer-ebpf",
                "tracer-common",
            ],
        );
        if !dirty.is_empty() && dirty != "?" {
            commit.push_str(" + uncommitted changes in tracer/");
        }
        let other_tracers = crate::observer::foreign_tracers(crate::PREFIX, &[]);
        let other_netns = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with(crate::PREFIX))
                    .count()
            })
            .unwrap_or(0);
        Machine {
            date: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            cpu: first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into()),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            kernel: run("uname", &["-r"]),
            os: first_line_with("/etc/os-release", "PRETTY_NAME").unwrap_or_else(|| "?".into()),
            mem_total: first_line_with("/proc/meminfo", "MemTotal").unwrap_or_else(|| "?".into()),
            load_at_start: load_average(),
            load_at_end: String::new(),
            other_tracers,
            other_netns,
            commit,
        }
    }
}
