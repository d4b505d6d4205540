//! Ground truth: pitrguard's verdicts against real PostgreSQL point-in-time recoveries.
//!
//! A real primary archives its WAL while a workload commits ~10 rows a second; base backups are
//! taken with `pg_basebackup -Ft -Xf -c fast` as the addon does (one that finishes inside the
//! second it is stamped with, one taken while nothing commits, one idle); the archive is frozen into a snapshot the way KubeBlocks'
//! PostgreSQL addon would see it (`pg_waldump`: first and last COMMIT, whole seconds), while the
//! primary keeps committing. From that, the KubeBlocks objects (Backups, ActionSets, one Restore
//! OpsRequest per target time T) are written and judged by the real `pitrguard validate` binary,
//! under `--base-edge strict` and `--base-edge inclusive`. Then every T is restored for real:
//! the base pitrguard names (M3), or the one KubeBlocks would pick for a denied T, plus the WAL
//! of the snapshot, `recovery_target_time` = T (normal form), promote. A restore either is
//! refused by PostgreSQL, or promotes with exactly the commits <= T, or promotes with wrong data.
//!
//! Strict: no allowed T may be refused or get wrong data. Inclusive (R13 off) must let at least
//! one such T through: the proof that R13 matters. `PITRGUARD_GROUND_TRUTH_OUT=FILE` writes the
//! report (GROUND_TRUTH.md is one).
//!
//! Every server is stopped by its PID, by a Drop guard and, should this process die, by a
//! watchdog; the temporary directory is removed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::process::{after_exit, free_port, wait_for};

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde_json::{Value, json};

const US: i64 = 1_000_000;
const NS: &str = "demo";
const CONTINUOUS: &str = "pg-cluster-archive-wal";
const CLUSTER_UID: &str = "3f0c2b9e-6a53-4c1e-9d2f-0b7f5a1e8c42";
/// Time between two workload commits.
const COMMIT_EVERY: Duration = Duration::from_millis(100);
/// Bounds for things that normally take a second or two (none equals another program's own timeout).
const START_LIMIT: Duration = Duration::from_secs(100);
const RECOVERY_LIMIT: Duration = Duration::from_secs(150);
const STOP_LIMIT: Duration = Duration::from_secs(40);
const ARCHIVE_LIMIT: Duration = Duration::from_secs(45);
/// How often a base backup whose situation did not happen is taken again.
const ATTEMPTS: u32 = 8;

// === Time: microseconds since the Unix epoch, UTC ===

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

fn secs(us: i64) -> i64 {
    us.div_euclid(US)
}

fn utc(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).expect("a representable time")
}

/// The normal form: RFC 3339, UTC, whole seconds.
fn rfc3339(s: i64) -> String {
    utc(s * US).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn clock(us: i64) -> String {
    utc(us).format("%H:%M:%S%.6f").to_string()
}

fn hms(s: i64) -> String {
    utc(s * US).format("%H:%M:%S").to_string()
}

fn sleep_until(us: i64) {
    let now = now_us();
    if us > now {
        thread::sleep(Duration::from_micros((us - now) as u64));
    }
}

// === Running PostgreSQL's programs as the `postgres` user ===

struct Pg {
    bin: PathBuf,
    /// uid and gid of `postgres` when we are root; None runs as ourselves.
    ids: Option<(u32, u32)>,
    home: PathBuf,
}

/// The newest installed PostgreSQL: /usr/lib/postgresql/<major>/bin.
fn find_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().expect("PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/pg_ctl (.ci/run installs it)").1
}

fn postgres_ids() -> Option<(u32, u32)> {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("running as root, the user `postgres` must exist to run PostgreSQL (.ci/run creates it)");
    let f: Vec<&str> = line.split(':').collect();
    Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
}

impl Pg {
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            c.uid(uid).gid(gid);
        }
        c.current_dir(&self.home)
            .env("HOME", &self.home)
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .env_remove("PGDATA")
            .env_remove("PGOPTIONS")
            .stdin(Stdio::null());
        c
    }

    fn cmd(&self, program: &str) -> Command {
        self.command(self.bin.join(program))
    }

    /// Runs a program that must succeed; returns its stdout.
    fn run(&self, mut cmd: Command) -> String {
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn psql(&self, port: u16, sql: &str) -> Result<String, String> {
        let out = self
            .cmd("psql")
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-c", sql])
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Makes a file or directory we created as root the `postgres` user's.
    fn own(&self, path: &Path) {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }
}

/// The watchdog's script: stop every server whose data directory is under `dir` (by the PID in
/// its postmaster.pid, only if that process runs on that directory), then remove `dir`.
fn cleanup_script(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"pids=""
for f in {d}/*/postmaster.pid; do
  p=$(head -n 1 "$f" 2>/dev/null)
  case "$p" in ''|*[!0-9]*) continue ;; esac
  if tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -qF -- "{d}/"; then kill -INT $p; pids="$pids $p"; fi
done
i=0
while [ -n "$pids" ] && [ $i -lt 60 ]; do
  alive=""; for p in $pids; do kill -0 $p 2>/dev/null && alive="$alive $p"; done
  pids=$alive; i=$((i + 1)); [ -n "$pids" ] && sleep 0.5
done
for p in $pids; do kill -KILL $p 2>/dev/null; done
rm -rf {d}"#
    )
}

// === A PostgreSQL server: our child, stopped by its PID ===

struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts `postgres -D data` on a free port and waits until it listens (recovery, if any,
    /// goes on). Takes another port when the chosen one was taken meanwhile.
    fn start(pg: &Pg, data: &Path, log: &Path) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let child = pg
                .cmd("postgres")
                .args(["-D".as_ref(), data.as_os_str()])
                .args(["-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(fs::File::create(log).unwrap())
                .spawn()
                .expect("start postgres");
            let mut server = Server { child, port, log: log.to_path_buf() };
            let started = Instant::now();
            loop {
                let text = server.log();
                if text.contains("listening on IPv4 address") {
                    return server;
                }
                if server.exited() {
                    if text.contains("could not bind") {
                        break; // the port was taken: try another one
                    }
                    panic!("postgres -D {} did not start:\n{text}", data.display());
                }
                assert!(started.elapsed() < START_LIMIT, "postgres -D {} did not listen:\n{text}", data.display());
                thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("postgres -D {}: no free port in 5 tries", data.display());
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Fast shutdown (SIGINT to the postmaster's PID), SIGKILL if it does not go.
    fn stop(&mut self) {
        if self.exited() {
            return;
        }
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let started = Instant::now();
        while started.elapsed() < STOP_LIMIT {
            if self.exited() {
                return;
            }
            thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

// === The workload: one psql session committing a row every COMMIT_EVERY ===

struct Session {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    /// Commits one row (autocommit) and returns its id.
    fn insert(&mut self) -> i64 {
        writeln!(self.stdin, "INSERT INTO t(note) VALUES ('w') RETURNING id;")
            .and_then(|_| self.stdin.flush())
            .expect("the workload's psql session died");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("the workload's psql session died");
        line.trim().parse().unwrap_or_else(|_| panic!("workload: psql printed {line:?}"))
    }
}

struct Workload {
    session: Arc<Mutex<Session>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    child: Child,
}

impl Workload {
    fn start(pg: &Pg, port: u16, log: &Path) -> Workload {
        let mut child = pg
            .cmd("psql")
            .args(["-XqAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "postgres", "-d", "postgres"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .expect("start the workload's psql");
        let session =
            Session { stdin: child.stdin.take().unwrap(), stdout: BufReader::new(child.stdout.take().unwrap()) };
        let session = Arc::new(Mutex::new(session));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (session, stop) = (session.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    session.lock().expect("workload session").insert();
                    thread::sleep(COMMIT_EVERY);
                }
            })
        };
        Workload { session, stop, thread: Some(thread), child }
    }

    /// Nothing commits while the guard lives (the guard can commit itself).
    fn pause(&self) -> MutexGuard<'_, Session> {
        self.session.lock().expect("the workload died")
    }

    fn finish(&mut self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let healthy = self.thread.take().is_none_or(|t| t.join().is_ok());
        let _ = self.child.kill();
        let _ = self.child.wait();
        healthy
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.finish();
    }
}

// === WAL: what pg_waldump shows ===

fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.trim().split_once('/').unwrap_or_else(|| panic!("not an LSN: {s:?}"));
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

#[derive(Debug, Clone, Copy)]
struct Rec {
    lsn: u64,
    /// A COMMIT record's time.
    commit: Option<i64>,
    /// A BACKUP_END record's backup start LSN.
    backup_end: Option<u64>,
}

fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The WAL segment files in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_segment(n))
        .collect();
    v.sort();
    v
}

/// The COMMIT and BACKUP_END records of segments `first..=last` in `dir`.
fn waldump(pg: &Pg, dir: &Path, first: &str, last: &str) -> Vec<Rec> {
    let out = pg.cmd("pg_waldump").arg("-p").arg(dir).args([first, last]).output().expect("run pg_waldump");
    // pg_waldump exits 1 at the end of the valid WAL of the last segment: that is expected.
    let text = String::from_utf8_lossy(&out.stdout);
    let recs: Vec<Rec> = text
        .lines()
        .filter_map(|l| {
            let lsn = parse_lsn(l.split("lsn: ").nth(1)?.split(',').next()?);
            let desc = l.split("desc: ").nth(1)?;
            let commit = desc.strip_prefix("COMMIT ").map(|d| {
                let ts = d.split(" UTC").next().unwrap();
                let t = NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f")
                    .unwrap_or_else(|e| panic!("pg_waldump commit time {ts:?}: {e}"));
                t.and_utc().timestamp_micros()
            });
            let backup_end = desc.strip_prefix("BACKUP_END ").map(parse_lsn);
            Some(Rec { lsn, commit, backup_end })
        })
        .collect();
    assert!(!recs.is_empty(), "pg_waldump {first}..{last} read nothing: {}", String::from_utf8_lossy(&out.stderr));
    recs
}

// === Base backups ===

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// The workload runs; a commit of the stamped second must come before the end-of-backup record.
    Busy,
    /// Nothing commits while it runs; the last commit before it is in the stamped second.
    Quiet,
    /// Nothing commits while it runs, nor earlier in the stamped second.
    Idle,
    /// The workload runs, pg_basebackup syncs to disk; no situation required.
    Synced,
}

struct Base {
    id: usize,
    kind: Kind,
    dir: PathBuf,
    started_us: i64,
    done_us: i64,
    /// end(B): the wall clock after pg_basebackup returned, whole seconds.
    end: i64,
    stop_segment: String,
    /// E(B): the time of the last commit before B's end-of-backup record.
    last_commit: i64,
    /// Commit times between B's redo point and its end-of-backup record.
    during: Vec<i64>,
    attempts: u32,
}

impl Base {
    fn label(&self) -> String {
        format!("B{}", self.id)
    }

    fn name(&self) -> String {
        format!("pg-cluster-full-b{}", self.id)
    }

    /// PostgreSQL refuses T = end(B): a commit later than end(B) precedes consistency.
    fn refuses_at_end(&self) -> bool {
        self.during.iter().any(|&c| c > self.end * US)
    }

    /// PostgreSQL serves T = end(B) with a commit later than T: the backup holds it, and no commit
    /// record is replayed before consistency.
    fn wrong_at_end(&self) -> bool {
        self.during.is_empty() && self.last_commit > self.end * US
    }

    fn situation_happened(&self) -> bool {
        match self.kind {
            Kind::Busy => self.refuses_at_end(),
            Kind::Quiet => self.wrong_at_end(),
            Kind::Idle => self.during.is_empty() && self.last_commit < self.end * US,
            Kind::Synced => true,
        }
    }

    fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Busy => {
                "workload running (backup rate-limited to ~0.4s); a commit of its stamped second precedes its end-of-backup record"
            }
            Kind::Quiet => "nothing committed while it ran; the last commit before it is in its stamped second",
            Kind::Idle => "nothing committed while it ran, nor earlier in its stamped second",
            Kind::Synced => "workload running, pg_basebackup with fsync; no situation required",
        }
    }
}

/// Takes a base backup as the addon does (`-Ft -Xf -c fast`: one tar, WAL inside) and unpacks it
/// into the data directory `dir`; returns the wall clock before and after pg_basebackup.
fn pg_basebackup(pg: &Pg, port: u16, dir: &Path, sync: bool, max_rate: Option<&str>) -> (i64, i64) {
    let tar = dir.with_extension("tar");
    let mut cmd = pg.cmd("pg_basebackup");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-Ft", "-Xf", "-c", "fast", "-D"])
        .arg(&tar);
    if !sync {
        cmd.arg("--no-sync");
    }
    if let Some(rate) = max_rate {
        cmd.args(["--max-rate", rate]);
    }
    let started = now_us();
    pg.run(cmd);
    let done = now_us();
    let mut mkdir = pg.command("mkdir");
    mkdir.args(["-m", "0700"]).arg(dir);
    pg.run(mkdir);
    let mut untar = pg.command("tar");
    untar.arg("-xf").arg(tar.join("base.tar")).arg("-C").arg(dir);
    pg.run(untar);
    fs::remove_dir_all(&tar).unwrap();
    (started, done)
}

/// Reads B's WAL facts from the archive, once its last segment is archived.
fn analyze_base(pg: &Pg, archive: &Path, id: usize, kind: Kind, dir: &Path, (started_us, done_us): (i64, i64)) -> Base {
    let label = fs::read_to_string(dir.join("backup_label")).unwrap();
    let start_lsn = parse_lsn(
        label
            .lines()
            .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
            .and_then(|l| l.split_whitespace().next())
            .expect("backup_label has START WAL LOCATION"),
    );
    let stop_segment = segments(&dir.join("pg_wal")).pop().expect("the base backup holds WAL (-Xf)");
    wait_for(ARCHIVE_LIMIT, &format!("{stop_segment} to be archived"), || {
        segments(archive).iter().any(|s| *s >= stop_segment)
    });
    let oldest = segments(archive).remove(0);
    let recs = waldump(pg, archive, &oldest, &stop_segment);
    let end_rec = recs
        .iter()
        .find(|r| r.backup_end == Some(start_lsn))
        .unwrap_or_else(|| panic!("no end-of-backup record for the backup starting at {start_lsn:X}"));
    let before: Vec<&Rec> = recs.iter().filter(|r| r.lsn < end_rec.lsn && r.commit.is_some()).collect();
    Base {
        id,
        kind,
        dir: dir.to_path_buf(),
        started_us,
        done_us,
        end: secs(done_us),
        stop_segment,
        last_commit: before.last().and_then(|r| r.commit).expect("a commit before the backup"),
        during: before.iter().filter(|r| r.lsn >= start_lsn).filter_map(|r| r.commit).collect(),
        attempts: 1,
    }
}

/// Takes base backup `id` until its situation happened (at most ATTEMPTS times).
fn take_base(pg: &Pg, port: u16, tmp: &Path, archive: &Path, workload: &Workload, id: usize, kind: Kind) -> Base {
    for attempt in 1..=ATTEMPTS {
        let dir = tmp.join(format!("base-{id}"));
        let times = if matches!(kind, Kind::Quiet | Kind::Idle) {
            let mut session = workload.pause();
            // Just after a second begins: one commit (Quiet) or none (Idle), then the backup at once,
            // nothing else committing.
            sleep_until((secs(now_us()) + 1) * US + 30_000);
            if kind == Kind::Quiet {
                session.insert();
            }
            pg_basebackup(pg, port, &dir, false, None)
        } else if kind == Kind::Busy {
            // Just after a second begins, slowed to ~0.4s (24 MB at 64 MB/s): the workload commits
            // while it runs, in the second it will be stamped with.
            sleep_until((secs(now_us()) + 1) * US + 50_000);
            pg_basebackup(pg, port, &dir, false, Some("64M"))
        } else {
            pg_basebackup(pg, port, &dir, true, None)
        };
        let mut base = analyze_base(pg, archive, id, kind, &dir, times);
        base.attempts = attempt;
        eprintln!(
            "ground truth: B{id} ({kind:?}) attempt {attempt}: end(B) {}, ran {:.2}s, {} commits while it ran, E(B) {}{}",
            hms(base.end),
            (base.done_us - base.started_us) as f64 / 1e6,
            base.during.len(),
            clock(base.last_commit),
            if base.situation_happened() { "" } else { ": situation did not happen, again" }
        );
        if base.situation_happened() {
            return base;
        }
        fs::remove_dir_all(&dir).unwrap();
        thread::sleep(Duration::from_millis(700));
    }
    panic!("base backup B{id} ({kind:?}): the required situation did not happen in {ATTEMPTS} attempts");
}

// === The KubeBlocks objects ===

fn labels(backup_type: &str) -> Value {
    json!({
        "app.kubernetes.io/instance": "pg-cluster",
        "apps.kubeblocks.io/component-name": "postgresql",
        "dataprotection.kubeblocks.io/cluster-uid": CLUSTER_UID,
        "dataprotection.kubeblocks.io/backup-policy": "pg-cluster-postgresql-backup-policy",
        "dataprotection.kubeblocks.io/backup-repo-name": "s3-repo",
        "app.kubernetes.io/managed-by": "kubeblocks-dataprotection",
        "dataprotection.kubeblocks.io/backup-type": backup_type,
    })
}

const SNAPSHOT: &str = r#"{"apiVersion":"apps.kubeblocks.io/v1alpha1","kind":"Cluster","metadata":{"name":"pg-cluster","namespace":"demo"},"spec":{"clusterDefinitionRef":"postgresql","clusterVersionRef":"postgresql-14.8.0","terminationPolicy":"Delete","componentSpecs":[{"name":"postgresql","componentDefRef":"postgresql","replicas":1}]}}"#;

fn inventory(bases: &[Base], start_s: i64, end_s: i64) -> Vec<Value> {
    let mut docs = vec![
        json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "ActionSet",
            "metadata": {"name": "postgresql-basebackup"},
            "spec": {"backupType": "Full",
                     "backup": {"backupData": {"image": "apecloud/spilo:14.8.0",
                                               "command": ["bash", "-c", "pg_basebackup -Ft -Xf -c fast -D - | datasafed push - /basebackup.tar"]}},
                     "restore": {"prepareData": {"image": "apecloud/spilo:14.8.0",
                                                 "command": ["bash", "-c", "datasafed pull /basebackup.tar - | tar -xf - -C ${DATA_DIR}"]}}}
        }),
        json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "ActionSet",
            "metadata": {"name": "postgresql-pitr"},
            "spec": {"backupType": "Continuous",
                     "backup": {"backupData": {"image": "apecloud/spilo:14.8.0",
                                               "command": ["bash", "-c", "/home/postgres/pgdata/kb_restore/archive-wal.sh"]}},
                     "restore": {"prepareData": {"image": "apecloud/spilo:14.8.0",
                                                 "command": ["bash", "-c", "/home/postgres/pgdata/kb_restore/restore-wal.sh"]}}}
        }),
    ];
    let mut continuous = labels("Continuous");
    continuous["dataprotection.kubeblocks.io/autobackup"] = json!("true");
    docs.push(json!({
        "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
        "metadata": {"name": CONTINUOUS, "namespace": NS, "labels": continuous,
                     "annotations": {"kubeblocks.io/cluster-snapshot": SNAPSHOT}},
        "spec": {"backupPolicyName": "pg-cluster-postgresql-backup-policy", "backupMethod": "archive-wal"},
        "status": {"phase": "Running", "backupMethod": {"name": "archive-wal", "actionSetName": "postgresql-pitr"},
                   "startTimestamp": rfc3339(start_s),
                   "timeRange": {"start": rfc3339(start_s), "end": rfc3339(end_s)}}
    }));
    for b in bases {
        let (start, end) = (rfc3339(secs(b.started_us)), rfc3339(b.end));
        docs.push(json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": b.name(), "namespace": NS, "labels": labels("Full"),
                         "annotations": {"kubeblocks.io/cluster-snapshot": SNAPSHOT}},
            "spec": {"backupPolicyName": "pg-cluster-postgresql-backup-policy", "backupMethod": "pg-basebackup"},
            "status": {"phase": "Completed",
                       "backupMethod": {"name": "pg-basebackup", "actionSetName": "postgresql-basebackup"},
                       "startTimestamp": start, "completionTimestamp": end,
                       "timeRange": {"start": start, "end": end}}
        }));
    }
    docs
}

fn write_yaml(path: &Path, docs: &[Value]) {
    let text: Vec<String> = docs.iter().map(|d| serde_yaml::to_string(d).unwrap()).collect();
    fs::write(path, text.join("---\n")).unwrap();
}

// === Targets and verdicts ===

struct Target {
    /// restorePointInTime as written.
    raw: String,
    /// The instant, in microseconds.
    us: i64,
    /// Where it lies: "end(B2)+1s", "end(S)" …
    label: String,
}

impl Target {
    /// The normal form T (whole seconds), what recovery_target_time gets.
    fn t(&self) -> i64 {
        secs(self.us)
    }

    fn name(&self, i: usize) -> String {
        format!("gt-{i:02}")
    }
}

#[derive(Debug, Clone)]
struct Verdict {
    allowed: bool,
    rules: Vec<String>,
    /// M3: the base backup pitrguard says the restore starts from.
    base: Option<String>,
    message: String,
}

impl Verdict {
    fn show(&self) -> String {
        if self.allowed { "allowed".into() } else { format!("denied {}", self.rules.join("+")) }
    }
}

fn m3_base(patch: &Value) -> Option<String> {
    patch.as_array()?.iter().find_map(|op| match op["path"].as_str()? {
        "/metadata/annotations" => op["value"]["pitrguard.io/base-backup"].as_str().map(str::to_string),
        "/metadata/annotations/pitrguard.io~1base-backup" => op["value"].as_str().map(str::to_string),
        _ => None,
    })
}

fn validate(dir: &Path, mode: &str) -> HashMap<String, Verdict> {
    let out = Command::new(env!("CARGO_BIN_EXE_pitrguard"))
        .args(["validate", "--output", "json", "--base-edge", mode])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run pitrguard validate");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "pitrguard validate --base-edge {mode} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("pitrguard validate --output json prints JSON");
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let verdict = Verdict {
                allowed: i["allowed"].as_bool().unwrap(),
                rules: i["rules"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(Into::into)).collect(),
                base: m3_base(&i["patch"]),
                message: i["message"].as_str().unwrap_or_default().to_string(),
            };
            (i["name"].as_str().unwrap().to_string(), verdict)
        })
        .collect()
}

/// The base KubeBlocks restores T from: the latest end(B) <= T among bases with end(B) >= start(S);
/// if there is none, the earliest base (the restore cannot work then, and must fail).
fn kubeblocks_pick(bases: &[Base], start_s: i64, t: i64) -> usize {
    bases
        .iter()
        .enumerate()
        .filter(|(_, b)| b.end >= start_s && b.end <= t)
        .max_by_key(|(_, b)| b.end)
        .or_else(|| bases.iter().enumerate().min_by_key(|(_, b)| b.end))
        .unwrap()
        .0
}

// === Restores ===

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Refused(String),
    Correct { rows: usize },
    Wrong { rows: usize, expected: usize, later: usize, missing: usize },
}

impl Outcome {
    fn served(&self) -> bool {
        matches!(self, Outcome::Correct { .. })
    }

    fn show(&self) -> String {
        match self {
            Outcome::Refused(why) => format!("refused: {why}"),
            Outcome::Correct { rows } => format!("promoted, correct ({rows} rows = commits <= T)"),
            Outcome::Wrong { rows, expected, later, missing } => format!(
                "promoted, WRONG data ({rows} rows, {expected} commits <= T: {later} later than T, {missing} missing)"
            ),
        }
    }
}

/// Restores `base` + the snapshot's WAL to T (whole seconds) and judges what PostgreSQL did.
fn restore(pg: &Pg, tmp: &Path, snapshot: &Path, base: &Base, t: i64, rows: &BTreeMap<i64, i64>, n: usize) -> Outcome {
    let dir = tmp.join(format!("restore-{n}"));
    pg.run({
        let mut c = pg.command("cp");
        c.arg("-a").arg(&base.dir).arg(&dir);
        c
    });
    let target = utc(t * US).format("%Y-%m-%d %H:%M:%S+00").to_string();
    let mut conf = fs::OpenOptions::new().append(true).open(dir.join("postgresql.conf")).unwrap();
    write!(
        conf,
        "\n# ground truth restore\narchive_mode = off\nhot_standby = off\nshared_buffers = 16MB\n\
         restore_command = 'cp {}/%f \"%p\"'\nrecovery_target_time = '{target}'\n\
         recovery_target_action = 'promote'\n",
        snapshot.display()
    )
    .unwrap();
    drop(conf);
    let signal = dir.join("recovery.signal");
    fs::write(&signal, "").unwrap();
    pg.own(&signal);

    let log = tmp.join(format!("restore-{n}.log"));
    let mut server = Server::start(pg, &dir, &log);
    let started = Instant::now();
    let outcome = loop {
        let text = server.log();
        if text.contains("database system is ready to accept connections") {
            let state = pg.psql(server.port, "SELECT pg_is_in_recovery()");
            assert_eq!(state.as_deref(), Ok("f"), "restore to {target} from {}: not promoted:\n{text}", base.label());
            let got = match pg.psql(server.port, "SELECT id FROM t ORDER BY id") {
                Ok(out) => out.lines().map(|l| l.parse::<i64>().unwrap()).collect::<Vec<_>>(),
                Err(e) if e.contains("does not exist") => Vec::new(),
                Err(e) => panic!("restore to {target}: reading the rows failed: {e}"),
            };
            let expected: Vec<i64> = rows.iter().filter(|&(_, &c)| c <= t * US).map(|(&id, _)| id).collect();
            break if got == expected {
                Outcome::Correct { rows: got.len() }
            } else {
                let later = got.iter().filter(|id| rows.get(id).is_none_or(|&c| c > t * US)).count();
                let missing = expected.iter().filter(|id| !got.contains(id)).count();
                Outcome::Wrong { rows: got.len(), expected: expected.len(), later, missing }
            };
        }
        if server.exited() {
            let why = if text.contains("requested recovery stop point is before consistent recovery point") {
                "stop point before consistent recovery point".to_string()
            } else if text.contains("recovery ended before configured recovery target was reached") {
                "recovery ended before the target was reached".to_string()
            } else {
                text.lines().find(|l| l.contains("FATAL") || l.contains("PANIC")).unwrap_or("exited").to_string()
            };
            break Outcome::Refused(why);
        }
        assert!(started.elapsed() < RECOVERY_LIMIT, "restore to {target}: neither promoted nor refused:\n{text}");
        thread::sleep(Duration::from_millis(25));
    };
    drop(server);
    fs::remove_dir_all(&dir).unwrap();
    outcome
}

fn agreement(v: &Verdict, o: &Outcome) -> &'static str {
    match (v.allowed, o.served()) {
        (true, true) | (false, false) => "agree",
        (true, false) => "DANGEROUS ALLOW",
        (false, true) => "lost window",
    }
}

const MODES: [&str; 2] = ["strict", "inclusive"];

#[test]
fn pitrguard_verdicts_match_real_postgresql_recoveries() {
    let began = Instant::now();
    let tmp = tempfile::Builder::new().prefix("pitrguard-gt-").tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    after_exit(&cleanup_script(&root));
    let pg = Pg { bin: find_bin(), ids: postgres_ids(), home: root.clone() };
    pg.own(&root);
    let version = pg.run({
        let mut c = pg.cmd("postgres");
        c.arg("--version");
        c
    });
    let version = version.trim().to_string();

    // --- The primary: WAL archived every second (1 MB segments), commit times tracked.
    let (primary_dir, archive, snapshot) = (root.join("primary"), root.join("archive"), root.join("snapshot"));
    for d in [&archive, &snapshot] {
        fs::create_dir(d).unwrap();
        pg.own(d);
    }
    pg.run({
        let mut c = pg.cmd("initdb");
        c.arg("-D").arg(&primary_dir).args(["--wal-segsize=1", "--no-locale", "-E", "UTF8", "--auth=trust"]);
        c.args(["-U", "postgres", "--no-sync"]);
        c
    });
    let a = archive.display();
    let mut conf = fs::OpenOptions::new().append(true).open(primary_dir.join("postgresql.conf")).unwrap();
    write!(
        conf,
        "\n# ground truth primary\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
         max_connections = 20\nshared_buffers = 32MB\nwal_level = replica\narchive_mode = on\n\
         archive_command = 'test ! -f {a}/%f && cp %p {a}/%f.tmp && mv {a}/%f.tmp {a}/%f'\narchive_timeout = 1\n\
         track_commit_timestamp = on\nautovacuum = off\nfsync = off\nlc_messages = 'C'\n\
         log_timezone = 'UTC'\ntimezone = 'UTC'\n"
    )
    .unwrap();
    drop(conf);
    let mut primary = Server::start(&pg, &primary_dir, &root.join("primary.log"));
    wait_for(START_LIMIT, "the primary to accept connections", || {
        primary.log().contains("database system is ready to accept connections")
    });
    let port = primary.port;
    pg.psql(port, "CREATE TABLE t (id serial PRIMARY KEY, note text)").unwrap();
    let mut workload = Workload::start(&pg, port, &root.join("workload.log"));
    eprintln!("ground truth: {version}, primary on port {port}, workload committing every {COMMIT_EVERY:?}");

    // --- Base backups, a few seconds of commits apart.
    let mut bases = Vec::new();
    for (id, kind) in [(1, Kind::Busy), (2, Kind::Quiet), (3, Kind::Idle), (4, Kind::Synced)] {
        thread::sleep(Duration::from_millis(3000));
        bases.push(take_base(&pg, port, &root, &archive, &workload, id, kind));
    }

    // --- Freeze the archive: a snapshot without its two newest segments, while the primary commits
    // on; taken once the segments it keeps reach 4s past the last base backup's end.
    let last_stop = bases.iter().map(|b| b.stop_segment.clone()).max().unwrap();
    let last_end = bases.iter().map(|b| b.end).max().unwrap();
    let mut all = Vec::new();
    wait_for(ARCHIVE_LIMIT, "the archive to reach 4s past the last base backup", || {
        all = segments(&archive);
        let Some(newest_kept) = all.len().checked_sub(3).map(|i| &all[i]) else { return false };
        *newest_kept > last_stop
            && waldump(&pg, &archive, &last_stop, newest_kept)
                .iter()
                .filter_map(|r| r.commit)
                .any(|c| secs(c) >= last_end + 4)
    });
    let kept = &all[..all.len() - 2];
    let newest_kept = kept.last().unwrap().clone();
    for entry in fs::read_dir(&archive).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.len() >= 24 && is_segment(&name[..24]) && name[..24] <= *newest_kept && !name.ends_with(".tmp") {
            fs::copy(archive.join(&name), snapshot.join(&name)).unwrap();
            pg.own(&snapshot.join(&name));
        }
    }
    let snap_commits: Vec<i64> =
        waldump(&pg, &snapshot, &kept[0], &newest_kept).iter().filter_map(|r| r.commit).collect();
    let (first_commit, last_archived) = (snap_commits[0], *snap_commits.last().unwrap());
    let (start_s, end_s) = (secs(first_commit), secs(last_archived));
    eprintln!(
        "ground truth: snapshot of {} segments ({}..{}), log range {} .. {}",
        kept.len(),
        kept[0],
        newest_kept,
        rfc3339(start_s),
        rfc3339(end_s)
    );
    thread::sleep(Duration::from_millis(3000));
    assert!(workload.finish(), "the workload failed (see {}/workload.log)", root.display());

    // Every row and its commit time, from the primary (track_commit_timestamp).
    let rows: BTreeMap<i64, i64> = pg
        .psql(port, "SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM t ORDER BY id")
        .unwrap()
        .lines()
        .map(|l| {
            let (id, epoch) = l.split_once('|').unwrap();
            let (s, frac) = epoch.split_once('.').unwrap_or((epoch, "0"));
            let frac: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
            (id.parse().unwrap(), s.parse::<i64>().unwrap() * US + frac.parse::<i64>().unwrap())
        })
        .collect();
    primary.stop();
    let unarchived: Vec<i64> = rows.values().copied().filter(|&c| c > last_archived).collect();
    assert!(
        unarchived.iter().any(|&c| secs(c) >= end_s + 2),
        "the primary must hold commits that are not in the snapshot, 2s after end(S)"
    );
    for b in &bases {
        assert!(b.stop_segment <= newest_kept, "{}'s WAL must be in the snapshot", b.label());
        assert!(b.end < end_s - 1, "{} must end well inside the log range", b.label());
        assert!(b.situation_happened(), "{}: {}", b.label(), b.describe());
    }

    // --- Target times around every edge.
    let mut targets: Vec<Target> = Vec::new();
    let mut add = |us: i64, raw: String, label: String| match targets.iter_mut().find(|t| t.raw == raw) {
        Some(t) => t.label = format!("{} = {label}", t.label),
        None => targets.push(Target { raw, us, label }),
    };
    let whole = |s: i64, label: &str| (s * US, rfc3339(s), label.to_string());
    let mut wanted =
        vec![whole(start_s - 10, "start(S)-10s"), whole(start_s - 1, "start(S)-1s"), whole(start_s, "start(S)")];
    for b in &bases {
        let l = b.label();
        wanted.push(whole(b.end - 1, &format!("end({l})-1s")));
        wanted.push(whole(b.end, &format!("end({l})")));
        let half = b.end * US + US / 2;
        wanted.push((half, format!("{}.5Z", utc(half).format("%Y-%m-%dT%H:%M:%S")), format!("end({l})+0.5s")));
        wanted.push(whole(b.end + 1, &format!("end({l})+1s")));
    }
    for w in bases.windows(2) {
        wanted.push(whole((w[0].end + w[1].end) / 2, &format!("mid({},{})", w[0].label(), w[1].label())));
    }
    // In kbcli's layout, at UTC+0800.
    let mid = (bases.last().unwrap().end + end_s) / 2 * US;
    let kbcli = utc(mid).with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap());
    wanted.push((
        mid,
        kbcli.format("%b %d,%Y %H:%M:%S UTC%z").to_string(),
        format!("mid({},S), kbcli layout", bases.last().unwrap().label()),
    ));
    wanted.push(whole(end_s - 1, "end(S)-1s"));
    wanted.push(whole(end_s, "end(S)"));
    wanted.push((
        last_archived,
        utc(last_archived).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "last archived commit".into(),
    ));
    wanted.push(whole(end_s + 1, "end(S)+1s"));
    let unarchived_commit = *unarchived.iter().find(|&&c| secs(c) >= end_s + 2).unwrap();
    wanted.push((
        unarchived_commit,
        utc(unarchived_commit).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "a commit not yet archived".into(),
    ));
    wanted.push(whole(secs(*unarchived.last().unwrap()), "last commit on the primary"));
    wanted.sort_by_key(|w| w.0);
    for (us, raw, label) in wanted {
        add(us, raw, label);
    }

    // --- The objects, and pitrguard's verdicts in both modes.
    let objects = root.join("objects");
    fs::create_dir(&objects).unwrap();
    write_yaml(&objects.join("inventory.yaml"), &inventory(&bases, start_s, end_s));
    let restores: Vec<Value> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "apiVersion": "operations.kubeblocks.io/v1alpha1", "kind": "OpsRequest",
                "metadata": {"name": t.name(i), "namespace": NS},
                "spec": {"type": "Restore", "clusterName": format!("{}-restored", t.name(i)),
                         "restore": {"backupName": CONTINUOUS, "restorePointInTime": t.raw}}
            })
        })
        .collect();
    write_yaml(&objects.join("restores.yaml"), &restores);
    let verdicts: Vec<HashMap<String, Verdict>> = MODES.iter().map(|m| validate(&objects, m)).collect();

    // --- Which base each restore starts from, per mode.
    let mut problems: Vec<String> = Vec::new();
    let base_of = |v: &Verdict, t: &Target, problems: &mut Vec<String>| -> usize {
        let kb = kubeblocks_pick(&bases, start_s, t.t());
        if v.allowed {
            match &v.base {
                Some(name) if *name == bases[kb].name() => {}
                other => problems.push(format!(
                    "{} ({}): M3 names {other:?}, KubeBlocks picks {}",
                    t.raw,
                    t.label,
                    bases[kb].name()
                )),
            }
        }
        kb
    };
    let mut plan: Vec<[usize; 2]> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let mut pick = [0; 2];
        for (m, v) in verdicts.iter().enumerate() {
            let v = v.get(&t.name(i)).unwrap_or_else(|| panic!("no verdict for {}", t.name(i)));
            pick[m] = base_of(v, t, &mut problems);
        }
        plan.push(pick);
    }

    // --- Restore every (base, T) for real, two at a time.
    let mut jobs: Vec<(usize, i64)> =
        plan.iter().zip(&targets).flat_map(|(p, t)| p.iter().map(move |&b| (b, t.t()))).collect();
    jobs.sort();
    jobs.dedup();
    let restoring = Instant::now();
    let queue = Mutex::new(jobs.iter().copied().enumerate().collect::<Vec<_>>());
    let outcomes: Mutex<HashMap<(usize, i64), Outcome>> = Mutex::new(HashMap::new());
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let Some((n, (b, t))) = queue.lock().unwrap().pop() else { break };
                    let o = restore(&pg, &root, &snapshot, &bases[b], t, &rows, n);
                    outcomes.lock().unwrap().insert((b, t), o);
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap();
    eprintln!("ground truth: {} restores in {:.0}s", jobs.len(), restoring.elapsed().as_secs_f64());

    // --- The table.
    let mut counts = [[0usize; 3]; 2]; // per mode: agreements, dangerous allows, lost windows
    let mut findings: [Vec<String>; 2] = Default::default();
    let mut md = String::new();
    md.push_str("| # | T as written | T (normal form) | relative to | base | strict | inclusive | PostgreSQL | strict vs PostgreSQL | inclusive vs PostgreSQL |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let mut text = String::new();
    for (i, t) in targets.iter().enumerate() {
        let vs: Vec<&Verdict> = verdicts.iter().map(|v| &v[&t.name(i)]).collect();
        let os: Vec<&Outcome> = plan[i].iter().map(|&b| &outcomes[&(b, t.t())]).collect();
        let agree: Vec<&str> = (0..2).map(|m| agreement(vs[m], os[m])).collect();
        for m in 0..2 {
            let k = match agree[m] {
                "agree" => 0,
                "DANGEROUS ALLOW" => 1,
                _ => 2,
            };
            counts[m][k] += 1;
            if k != 0 {
                let b = &bases[plan[i][m]];
                let why = if !vs[m].allowed && vs[m].rules.iter().any(|r| r == "R10") && t.us > end_s * US {
                    format!(
                        " (R10 judges T as written, after end(S) = {}; the restore runs to its normal form)",
                        hms(end_s)
                    )
                } else if t.t() == b.end {
                    format!(
                        " (E({0}) = {1}, end({0}) = {2}, {3} commits while {0} ran)",
                        b.label(),
                        clock(b.last_commit),
                        hms(b.end),
                        b.during.len()
                    )
                } else {
                    String::new()
                };
                findings[m].push(format!(
                    "{} at {} (`{}`): {}, from {}: PostgreSQL {}{why}",
                    agree[m],
                    t.label,
                    t.raw,
                    vs[m].show(),
                    b.label(),
                    os[m].show()
                ));
            }
        }
        let base = if plan[i][0] == plan[i][1] {
            bases[plan[i][0]].label()
        } else {
            format!("{} / {}", bases[plan[i][0]].label(), bases[plan[i][1]].label())
        };
        let pgo = if os[0] == os[1] { os[0].show() } else { format!("{} / {}", os[0].show(), os[1].show()) };
        writeln!(
            md,
            "| {i} | `{}` | {} | {} | {base} | {} | {} | {pgo} | {} | {} |",
            t.raw,
            hms(t.t()),
            t.label,
            vs[0].show(),
            vs[1].show(),
            agree[0],
            agree[1]
        )
        .unwrap();
        writeln!(
            text,
            "{i:>2} {:<9} {:<34} {:<4} {:<14} {:<14} {:<26} {pgo}{}",
            hms(t.t()),
            t.label,
            base,
            vs[0].show(),
            vs[1].show(),
            format!("{} / {}", agree[0], agree[1]),
            if t.raw == rfc3339(t.t()) { String::new() } else { format!("  [written {:?}]", t.raw) },
        )
        .unwrap();
    }
    eprintln!(
        "\n{:>2} {:<9} {:<34} {:<4} {:<14} {:<14} {:<26} PostgreSQL\n{text}",
        "#", "T", "relative to", "base", "strict", "inclusive", "strict / inclusive"
    );
    let count_line = |m: usize| {
        format!(
            "{}: {} agreements, {} dangerous allows, {} lost windows (of {} target times)",
            MODES[m],
            counts[m][0],
            counts[m][1],
            counts[m][2],
            targets.len()
        )
    };
    for (m, f) in findings.iter().enumerate() {
        eprintln!("{}", count_line(m));
        for line in f {
            eprintln!("  {line}");
        }
    }

    // --- The report.
    if let Ok(path) = std::env::var("PITRGUARD_GROUND_TRUTH_OUT") {
        let doc = report(
            &version,
            &bases,
            &targets,
            start_s,
            end_s,
            last_archived,
            kept.len(),
            unarchived.len(),
            &md,
            &[count_line(0), count_line(1)],
            &findings,
            jobs.len(),
        );
        fs::write(&path, doc).unwrap_or_else(|e| panic!("write {path}: {e}"));
        eprintln!("ground truth: report written to {path}");
    }

    // --- Assertions.
    for (i, t) in targets.iter().enumerate() {
        let strict = &verdicts[0][&t.name(i)];
        let inclusive = &verdicts[1][&t.name(i)];
        let (os, oi) = (&outcomes[&(plan[i][0], t.t())], &outcomes[&(plan[i][1], t.t())]);
        if strict.allowed && !os.served() {
            problems.push(format!(
                "DANGEROUS ALLOW under strict: {} ({}) is allowed ({}) but PostgreSQL {}",
                t.raw,
                t.label,
                strict.message,
                os.show()
            ));
        }
        if !strict.allowed && strict.rules.iter().any(|r| !["R10", "R11", "R13"].contains(&r.as_str())) {
            problems.push(format!("{} ({}) denied by an unexpected rule: {}", t.raw, t.label, strict.message));
        }
        if inclusive.allowed && !oi.served() && (strict.allowed || strict.rules != ["R13"]) {
            problems.push(format!(
                "inclusive lets {} ({}) through and PostgreSQL {}, but strict does not deny it by R13 alone ({})",
                t.raw,
                t.label,
                oi.show(),
                strict.show()
            ));
        }
    }
    assert!(counts[1][1] >= 1, "inclusive mode must reproduce the failure R13 prevents: no dangerous allow");
    assert!(problems.is_empty(), "ground truth problems:\n{}", problems.join("\n"));
    eprintln!("ground truth: done in {:.0}s", began.elapsed().as_secs_f64());
}

#[allow(clippy::too_many_arguments)]
fn report(
    version: &str,
    bases: &[Base],
    targets: &[Target],
    start_s: i64,
    end_s: i64,
    last_archived: i64,
    segments: usize,
    unarchived: usize,
    table: &str,
    counts: &[String],
    findings: &[Vec<String>],
    restores: usize,
) -> String {
    let mut doc = String::new();
    writeln!(doc, "# Ground truth: pitrguard's verdicts against real PostgreSQL recoveries\n").unwrap();
    writeln!(
        doc,
        "Generated by `tests/ground_truth.rs` from one real run ({version}, {}). Reproduce with:\n\n\
         ```sh\nPITRGUARD_GROUND_TRUTH_OUT=GROUND_TRUTH.md cargo test --test ground_truth -- --nocapture\n```\n",
        utc(start_s * US).format("%Y-%m-%d")
    )
    .unwrap();
    doc.push_str(
        "## Method\n\n\
         - A primary (`initdb --wal-segsize=1`, `wal_level=replica`, `archive_mode=on`, `archive_timeout=1s`, \
         `track_commit_timestamp=on`) runs a workload that commits one row (`id serial`) every 100 ms.\n\
         - Base backups `pg_basebackup -Ft -Xf -c fast` (unpacked afterwards); end(B) = the wall clock after it returns, whole \
         seconds, as KubeBlocks stamps it. E(B) below is the last commit before B's end-of-backup record \
         (`pg_waldump`). Each base is taken again (a bounded number of times) until its situation happened.\n\
         - The archive is frozen into a snapshot without its two newest segments while the primary keeps \
         committing. start(S) / end(S) = first / last COMMIT time in the snapshot (`pg_waldump`), whole \
         seconds, as the KubeBlocks PostgreSQL addon derives them.\n\
         - The KubeBlocks objects (continuous + full Backups with the addon's labels, the ActionSets, one \
         Restore OpsRequest per T) are judged by `pitrguard validate --output json --base-edge strict|inclusive`.\n\
         - Every T is restored for real: a copy of the base pitrguard names in M3 (for a denied T, the one \
         KubeBlocks would pick: latest end(B) <= T among bases with end(B) >= start(S), else the earliest), \
         `restore_command` from the snapshot only, `recovery_target_time` = T in normal form (whole seconds), \
         `recovery_target_action = promote`. PostgreSQL either refuses (FATAL), or promotes and its rows are \
         compared with the primary's rows whose commit time (`pg_xact_commit_timestamp`) is <= T.\n\
         - agree: allowed and served correctly, or denied and PostgreSQL refuses / serves wrong data. \
         DANGEROUS ALLOW: allowed, but refused or wrong data. lost window: denied, but PostgreSQL would \
         have served it correctly.\n\n",
    );
    writeln!(doc, "## What happened\n").unwrap();
    writeln!(
        doc,
        "- Log range of the snapshot ({segments} segments of 1 MB): start(S) = {}, end(S) = {} \
         (last archived commit at {}); {unarchived} commits on the primary were not in the snapshot.",
        rfc3339(start_s),
        rfc3339(end_s),
        clock(last_archived)
    )
    .unwrap();
    writeln!(doc, "- {} target times, {restores} distinct restores (base, T).\n", targets.len()).unwrap();
    doc.push_str("| base | start(B) | end(B) | ran | E(B) | commits while it ran | attempts | situation |\n");
    doc.push_str("|---|---|---|---|---|---|---|---|\n");
    for b in bases {
        writeln!(
            doc,
            "| {} | {} | {} | {:.2}s | {} | {} | {} | {} |",
            b.label(),
            clock(b.started_us),
            hms(b.end),
            (b.done_us - b.started_us) as f64 / 1e6,
            clock(b.last_commit),
            b.during.len(),
            b.attempts,
            b.describe()
        )
        .unwrap();
    }
    writeln!(doc, "\n## Verdicts and recoveries (all times UTC)\n\n{table}").unwrap();
    writeln!(doc, "## Counts\n").unwrap();
    for (c, f) in counts.iter().zip(findings) {
        writeln!(doc, "- {c}").unwrap();
        for line in f {
            writeln!(doc, "  - {line}").unwrap();
        }
    }
    doc
}
