"""`make bench`: a backup at production sizes, side by side with the cron era and the physics.

For each scenario (SQLite at 1 GiB and 4 GiB in rollback-journal and WAL mode, MySQL at
1 GiB by default), on one stand-in tracker stack writing continuously, it measures:

- **baseline**: the cron-era pipeline: `docker stop`, `sqlite3 .backup` (or `mysqldump
  --single-transaction`), `gzip`, `docker start`;
- **ours**: `torrust-maint backup` in stop mode and, where the database allows it, in online
  mode;
- **physical reference**: a bare `docker stop` + `docker start` (3 trials), a `cp` of the
  database file, and `cp` + `zstd -T0` of it (for MySQL: of the dump our set holds).

Downtime is seen from outside: a prober polls the tracker's health endpoint every 20 ms; the
downtime is the longest outage, from the last answered probe before failed ones to the first
answered after them (a slow answer is no outage; the slowest gap is reported too). Also measured:
the stand-in's commit latency p99 during each run against idle (its per-commit log), the
wall time, the export throughput, the bytes written (from /proc/<pid>/io of the command) and
torrust-maint's peak RSS (VmHWM of its process, sampled every 50 ms; children excluded).
Results go to bench/results/scale.json; a table is printed.
Nothing is asserted: the targets are reported as met or missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.downtime import REPO, seed_mysql, seed_sqlite, write_json
from tests.testbed.stack import LATENCY_LOG, TrackerStack

ROOT = Path("/var/tmp/torrust-maint-bench")
PROBE_PERIOD = 0.020
HEALTH_PORT = 1313
GIB = 1 << 30
TRIALS = 3
TARGETS = {
    "online_downtime_s": 0.0,
    "online_p99_ratio": 2.0,  # tracker commit p99 during an online backup <= 2x idle
    "stop_ratio": 1.2,  # WAL and MySQL stop mode: <= 1.2x a bare stop+start
    "journal_ratio_physical": 1.2,  # rollback journal: <= 1.2x (cp + bare stop+start)
    "journal_ratio_baseline": 0.1,  # ... and <= 0.1x the cron-era baseline
    "export_ratio": 1.3,  # export wall time <= 1.3x (cp + zstd -T0)
    "peak_rss_mib": 100,
}


@dataclass
class Prober:
    """Polls the tracker's health endpoint every PROBE_PERIOD in a thread."""

    url: str
    probes: list[tuple[float, bool]] = field(default_factory=list)  # (when, answered)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        time.sleep(4 * PROBE_PERIOD)
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=0.5):  # noqa: S310 -- http only
                    self.probes.append((time.monotonic(), True))
            except OSError:
                self.probes.append((time.monotonic(), False))
            time.sleep(max(0.0, PROBE_PERIOD - (time.monotonic() - started)))

    def downtime(self) -> float:
        """The longest outage: from the last answered probe before a run of failed ones to
        the first answered after it (0 when no probe failed; a slow answer is no outage)."""
        longest, last_answered, failing = 0.0, None, False
        for when, answered in self.probes:
            if not answered:
                failing = True
            elif failing and last_answered is not None:
                longest, failing = max(longest, when - last_answered), False
            if answered:
                last_answered = when
        return round(longest, 3)

    def slowest_answer_gap(self) -> float:
        """The longest time between two answered probes (jitter included)."""
        answered = [when for when, ok in self.probes if ok]
        return round(max((b - a for a, b in zip(answered, answered[1:], strict=False)),
                         default=0.0), 3)


@dataclass
class Command:
    """A finished command: exit code, output, wall time, peak RSS and bytes it wrote."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mib: float
    write_bytes: int


def run_measured(argv: list[str]) -> Command:
    """Run argv, sampling /proc/<pid>/io and its VmHWM (its own peak RSS, without its
    children such as the docker CLI) until it exits."""
    started = time.monotonic()
    out_path, err_path = ROOT / "cmd.out", ROOT / "cmd.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        written, peak_kib = 0, 0
        while True:
            try:
                io = Path(f"/proc/{process.pid}/io").read_text()
                written = int(re.search(r"write_bytes: (\d+)", io).group(1))
                status_text = Path(f"/proc/{process.pid}/status").read_text()
                peak_kib = int(re.search(r"VmHWM:\s+(\d+)", status_text).group(1))
            except (OSError, AttributeError):
                pass
            pid, status, _usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Command(process.returncode, out_path.read_text(), err_path.read_text(),
                   round(time.monotonic() - started, 3), round(peak_kib / 1024, 1), written)


def cli(config: Path, *args: str) -> Command:
    return run_measured(["/usr/bin/python3", "-m", "torrust_maint", "--config", str(config),
                         *args])


def sh(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, **kwargs)


def tracker_url(tracker: TrackerStack) -> str:
    address = sh("docker", "inspect", "--format",
                 "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                 tracker.container_name, text=True).stdout.split()[0]
    return f"http://{address}:{HEALTH_PORT}/health_check"


def latencies(tracker: TrackerStack, since_ns: int, until_ns: int) -> list[int]:
    """The stand-in's commit durations (ns) of commits that ended in [since, until]."""
    log = tracker.compose_dir / "storage/tracker/log" / Path(LATENCY_LOG).name
    found = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and since_ns <= int(parts[0]) <= until_ns:
            found.append(int(parts[1]))
    return found


def p99_ms(values: list[int]) -> float | None:
    if len(values) < 20:
        return None
    return round(statistics.quantiles(values, n=100)[98] / 1e6, 3)


def with_probe(tracker: TrackerStack, action) -> tuple[object, float, float | None, float]:
    """Run action() with the prober on: its result, the downtime seen, the commit p99 (ms)
    during it (waiting for the stand-in to flush its log), the slowest answer gap."""
    since = time.time_ns()
    with Prober(tracker_url(tracker)) as prober:
        result = action()
    until = time.time_ns()
    time.sleep(1.5)  # the stand-in flushes its latency log every 100 commits
    return (result, prober.downtime(), p99_ms(latencies(tracker, since, until)),
            prober.slowest_answer_gap())


def idle_p99(tracker: TrackerStack, seconds: float = 10) -> float | None:
    since = time.time_ns()
    time.sleep(seconds)
    until = time.time_ns()
    time.sleep(1.5)
    return p99_ms(latencies(tracker, since, until))


def bare_restart(tracker: TrackerStack) -> float:
    def restart() -> None:
        sh("docker", "stop", tracker.container_name)
        sh("docker", "start", tracker.container_name)
        tracker.wait_healthy(timeout=300)
    return with_probe(tracker, restart)[1]


def settle() -> None:
    """Write back what earlier steps left dirty, so that no step pays for another's writes."""
    os.sync()
    time.sleep(1)


def physical_copy(source: Path, work: Path) -> dict:
    """`cp` of the file, and `cp` + `zstd -T0` of it, medians of TRIALS (the cache as warm as
    for ours; written back before each)."""
    target = work / "copy"
    cp, cp_zstd = [], []
    for _ in range(TRIALS):
        settle()
        started = time.monotonic()
        sh("cp", str(source), str(target))
        cp.append(time.monotonic() - started)
        target.unlink()
        settle()
        started = time.monotonic()
        sh("cp", str(source), str(target))
        sh("zstd", "-q", "-T0", "-f", "--rm", str(target), "-o", str(work / "copy.zst"))
        cp_zstd.append(time.monotonic() - started)
        (work / "copy.zst").unlink()
    return {"cp_s": round(statistics.median(cp), 3),
            "cp_zstd_s": round(statistics.median(cp_zstd), 3),
            "cp_trials_s": [round(v, 3) for v in cp]}


def baseline(tracker: TrackerStack, work: Path) -> dict:
    """The cron era: stop, `sqlite3 .backup` or mysqldump, gzip, start."""
    settle()

    def pipeline() -> dict:
        started = time.monotonic()
        sh("docker", "stop", tracker.container_name)
        if tracker.driver == "sqlite3":
            copy = work / "baseline.db"
            sh("sqlite3", str(tracker.db_host_path), f".backup '{copy}'")
            sh("gzip", "-f", str(copy))
            written = (work / "baseline.db.gz").stat().st_size + \
                tracker.db_host_path.stat().st_size
        else:
            with open(work / "baseline.sql.gz", "wb") as out:
                dump = subprocess.Popen(
                    ["docker", "exec", tracker.mysql_container_name, "sh", "-c",
                     'MYSQL_PWD="$MYSQL_PASSWORD" mysqldump -u"$MYSQL_USER" '
                     '--single-transaction --quick --lock-tables=false "$MYSQL_DATABASE"'],
                    stdout=subprocess.PIPE)
                subprocess.run(["gzip"], stdin=dump.stdout, stdout=out, check=True)
                assert dump.stdout is not None
                dump.stdout.close()
                if dump.wait() != 0:
                    raise SystemExit("baseline mysqldump failed")
            written = (work / "baseline.sql.gz").stat().st_size
        sh("docker", "start", tracker.container_name)
        tracker.wait_healthy(timeout=300)
        return {"wall_s": round(time.monotonic() - started, 3), "bytes_written": written}
    result, downtime, p99, _ = with_probe(tracker, pipeline)
    for leftover in work.glob("baseline.*"):
        leftover.unlink()
    assert isinstance(result, dict)
    return {**result, "downtime_s": downtime, "commit_p99_ms": p99}


def ours(tracker: TrackerStack, mode: str) -> dict:
    """`torrust-maint backup` in this window mode: downtime, phases, cost; the set removed."""
    config = tracker.compose_dir.parent / f"bench-{mode}.toml"
    extra = "[verify]\nafter_backup = false\n"
    if mode != "stop":
        extra += f'[window]\nmode = "{mode}"\n'
    config.write_text(tracker.config_toml(extra=extra))
    settle()
    done, downtime, p99, gap = with_probe(tracker, lambda: cli(config, "backup"))
    assert isinstance(done, Command)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    import json

    listed = json.loads(subprocess.run(
        ["/usr/bin/python3", "-m", "torrust_maint", "--config", str(config), "list", "--json"],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}).stdout)
    made = [s for s in listed if s.get("kind") == "backup"][-1]
    database = next(a for a in made["artifacts"] if a["name"] == "database")
    result = {
        "downtime_s": downtime, "slowest_probe_gap_s": gap,
        "manifest_downtime_s": made["downtime_seconds"],
        "phases": made["phases"], "wall_s": done.wall_s, "peak_rss_mib": done.peak_rss_mib,
        "bytes_written": done.write_bytes, "set_bytes": sum(a["size"] for a in made["artifacts"]),
        "database_bytes": database.get("uncompressed_size"), "commit_p99_ms": p99,
        "snapshot_method": made["database"].get("snapshot_method"),
    }
    export = made["phases"].get("export")
    if export and database.get("uncompressed_size"):
        result["export_mb_s"] = round(database["uncompressed_size"] / export / 1e6, 1)
    if tracker.driver == "mysql":
        result["dump_path"] = database["path"]
        result["dump_compression"] = database["compression"]
    else:
        sh("rm", "-rf", made["path"])
    return result


def median_run(tracker: TrackerStack, mode: str) -> dict:
    """ours() TRIALS times: the run with the median downtime, with every trial's downtime.
    The prober's resolution is its 0.5 s timeout (a probe in flight when the tracker goes
    down may hang that long): one run alone scattered by up to half a second."""
    runs = [ours(tracker, mode) for _ in range(TRIALS)]
    if any("error" in run for run in runs):
        return next(run for run in runs if "error" in run)
    runs.sort(key=lambda run: run["downtime_s"])
    chosen = runs[len(runs) // 2]
    chosen["downtime_trials_s"] = [run["downtime_s"] for run in runs]
    return chosen


def mysql_reference(result: dict, work: Path) -> dict:
    """cp + zstd -T0 of the dump our MySQL set holds (the same bytes, decompressed first)."""
    dump = work / "dump.sql"
    tool = {"zstd": ["zstd", "-q", "-d", "-c"], "gzip": ["gzip", "-d", "-c"]}[
        result.pop("dump_compression")]
    with open(dump, "wb") as out:
        subprocess.run([*tool, result.pop("dump_path")], stdout=out, check=True)
    reference = physical_copy(dump, work)
    dump.unlink()
    return reference


DUMP_ALONE = ('tool=$(command -v mariadb-dump || command -v mysqldump) && '
              '"$tool" --defaults-extra-file=/dev/stdin --single-transaction --hex-blob '
              '"$1" > /dev/null')


def dump_alone(tracker: TrackerStack) -> float:
    """The floor of a MySQL export: the server's own dump tool writing to /dev/null inside
    its container (no docker exec stream, no compression), median of TRIALS."""
    from tests.testbed.stack import MYSQL_USER_PASSWORD
    from torrust_maint.engines.mysql import option_file

    options = option_file("db_user", MYSQL_USER_PASSWORD)
    times = []
    for _ in range(TRIALS):
        settle()
        started = time.monotonic()
        sh("docker", "exec", "--interactive", tracker.mysql_container_name, "sh", "-c",
           DUMP_ALONE, "sh", "torrust_tracker", input=options)
        times.append(time.monotonic() - started)
    return round(statistics.median(times), 3)


def seed(tracker: TrackerStack, scenario: dict) -> dict:
    """Seed before (SQLite) or with the tracker stopped (MySQL); the seeded size."""
    started = time.monotonic()
    if tracker.driver == "sqlite3":
        rows = seed_sqlite(tracker.db_host_path, scenario["bytes"])
        if scenario["journal"] == "delete":
            import sqlite3

            connection = sqlite3.connect(tracker.db_host_path)
            connection.execute("PRAGMA journal_mode=DELETE")
            connection.close()
        return {"rows": rows, "file_bytes": tracker.db_host_path.stat().st_size,
                "seconds": round(time.monotonic() - started, 1)}
    return {}


def mysql_data_bytes(tracker: TrackerStack) -> int:
    connection = tracker.mysql_connect()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE torrents")  # information_schema's sizes lag otherwise
        cursor.fetchall()
        cursor.execute("SELECT SUM(data_length + index_length) FROM information_schema.tables "
                       "WHERE table_schema = DATABASE()")
        value = int(cursor.fetchone()[0] or 0)
    connection.close()
    return value


def seed_mysql_bytes(tracker: TrackerStack, target: int) -> dict:
    """Grow the torrents table until the database holds about `target` bytes."""
    started, rows = time.monotonic(), 1_000_000
    sh("docker", "stop", tracker.container_name)
    while True:
        seed_mysql(tracker, rows)
        size = mysql_data_bytes(tracker)
        if size >= target:
            break
        rows = int(rows * min(4.0, max(1.1, target / max(size, 1) * 1.05)))
    sh("docker", "start", tracker.container_name)
    tracker.wait_healthy(timeout=300)
    return {"rows_target": rows, "data_bytes": size,
            "seconds": round(time.monotonic() - started, 1)}


def scenario_list(args) -> list[dict]:
    scenarios = []
    for size in args.sqlite_sizes:
        for journal in ("delete", "wal"):
            scenarios.append({"driver": "sqlite3", "journal": journal, "bytes": size,
                              "label": f"sqlite-{journal}-{size / GIB:g}GiB"})
    for size in args.mysql_sizes:
        scenarios.append({"driver": "mysql", "journal": None, "bytes": size,
                          "label": f"mysql-{size / GIB:g}GiB"})
    return scenarios


def measure(scenario: dict, work: Path) -> dict:
    """Every measurement of one scenario on one stack."""
    tracker = TrackerStack(ROOT / scenario["label"] / "opt/torrust",
                           f"tm-bench-{scenario['label'].replace('.', '-').lower()}",
                           driver=scenario["driver"], journal_mode="keep", interval_ms=5,
                           latency_log=True)
    tracker.down()
    tracker.remove_files()
    tracker.create()
    result: dict = {**scenario, "seeded": seed(tracker, scenario)}
    tracker.up(timeout=300)
    try:
        if tracker.driver == "mysql":
            result["seeded"] = seed_mysql_bytes(tracker, scenario["bytes"])
        time.sleep(3)
        result["idle_commit_p99_ms"] = idle_p99(tracker)
        result["bare_downtime_s"] = statistics.median(
            bare_restart(tracker) for _ in range(TRIALS))
        result["baseline"] = baseline(tracker, work)
        result["stop"] = median_run(tracker, "stop")
        if tracker.driver == "mysql" or scenario["journal"] == "wal":
            result["online"] = ours(tracker, "online")
        if tracker.driver == "sqlite3":
            result["physical"] = physical_copy(tracker.db_host_path, work)
        elif "dump_path" in result["stop"]:
            result["physical"] = mysql_reference(result["stop"], work)
            result["physical"]["dump_alone_s"] = dump_alone(tracker)
            result.get("online", {}).pop("dump_path", None)
            result.get("online", {}).pop("dump_compression", None)
    finally:
        tracker.down()
        tracker.remove_files()
    result["targets"] = verdicts(result)
    return result


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def verdicts(result: dict) -> dict:
    """Each target that applies to the scenario: the figure, the bound, met or not."""
    found: dict = {}

    def target(name: str, value: float | None, bound: float) -> None:
        found[name] = {"value": value, "bound": bound,
                       "met": value is not None and value <= bound}

    stop, online = result.get("stop", {}), result.get("online")
    physical, bare = result.get("physical", {}), result.get("bare_downtime_s")
    if online is not None and "error" not in online:
        target("online downtime (s)", online["downtime_s"], TARGETS["online_downtime_s"])
        target("online commit p99 / idle", ratio(online.get("commit_p99_ms"),
                                                 result.get("idle_commit_p99_ms")),
               TARGETS["online_p99_ratio"])
    if "error" in stop:
        return found
    if result["driver"] == "mysql" or result["journal"] == "wal":
        target("stop downtime / bare stop+start", ratio(stop["downtime_s"], bare),
               TARGETS["stop_ratio"])
    else:
        physical_s = (physical.get("cp_s") or 0) + (bare or 0)
        target("stop downtime / (cp + bare stop+start)", ratio(stop["downtime_s"], physical_s),
               TARGETS["journal_ratio_physical"])
        target("stop downtime / baseline downtime",
               ratio(stop["downtime_s"], result["baseline"]["downtime_s"]),
               TARGETS["journal_ratio_baseline"])
    for mode in ("stop", "online"):
        run = result.get(mode)
        if run and "error" not in run:
            target(f"{mode} export / (cp + zstd -T0)",
                   ratio(run["phases"].get("export"), physical.get("cp_zstd_s")),
                   TARGETS["export_ratio"])
            if physical.get("dump_alone_s"):  # MySQL: the dump itself is the floor
                target(f"{mode} export / dump tool alone (reference)",
                       ratio(run["phases"].get("export"), physical["dump_alone_s"]),
                       TARGETS["export_ratio"])
            target(f"{mode} peak RSS (MiB)", run["peak_rss_mib"], TARGETS["peak_rss_mib"])
    return found


def machine() -> dict:
    from bench.postgresql_window import git_state

    meminfo = Path("/proc/meminfo").read_text()
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    df = sh("df", "-B1", "--output=source,fstype,size,avail", str(ROOT),
            text=True).stdout.splitlines()[-1].split()
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu.group(1) if cpu else None,
            "ram_bytes": int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) * 1024,
            "disk": {"device": df[0], "fstype": df[1], "size_bytes": int(df[2])},
            "kernel": platform.release(), "python": platform.python_version(),
            "docker": sh("docker", "version", "--format", "{{.Server.Version}}",
                         text=True).stdout.strip(),
            **git_state()}


def seconds(value: float | None) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def print_row(result: dict) -> None:
    stop, online = result.get("stop", {}), result.get("online") or {}
    base, physical = result.get("baseline", {}), result.get("physical", {})
    print(f"{result['label']:<20} base {seconds(base.get('downtime_s')):>8} "
          f"bare {seconds(result.get('bare_downtime_s')):>7} "
          f"stop {seconds(stop.get('downtime_s')):>7} "
          f"online {seconds(online.get('downtime_s')):>7} | "
          f"cp {seconds(physical.get('cp_s')):>7} cp+zstd {seconds(physical.get('cp_zstd_s')):>7} "
          f"export {seconds(stop.get('phases', {}).get('export')):>7} | "
          f"p99 idle {result.get('idle_commit_p99_ms')} online {online.get('commit_p99_ms')} ms "
          f"| rss {stop.get('peak_rss_mib')} MiB", flush=True)
    for name, verdict in result["targets"].items():
        print(f"    {'met   ' if verdict['met'] else 'MISSED'} {name}: {verdict['value']} "
              f"(<= {verdict['bound']})", flush=True)
    for mode in ("stop", "online"):
        if "error" in (result.get(mode) or {}):
            print(f"    {mode}: {result[mode]['error']}", flush=True)


def fmt(value, digits: int = 3, unit: str = "") -> str:
    return f"{value:.{digits}f}{unit}" if isinstance(value, (int, float)) else "-"


def markdown(document: dict) -> list[str]:
    """The results as the two tables of docs/benchmarks.md: the figures, then the targets."""
    lines = ["| scenario | database | baseline downtime | bare stop+start | stop downtime "
             "(in-window snapshot) | online downtime | cp | cp + zstd -T0 | export stop / "
             "online | commit p99 idle / online | peak RSS | bytes written (stop) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in document["scenarios"]:
        stop, online = result.get("stop", {}), result.get("online") or {}
        physical = result.get("physical", {})
        size = stop.get("database_bytes") or result["seeded"].get("file_bytes")
        lines.append(
            f"| {result['label']} | {fmt((size or 0) / 1e9, 2, ' GB')} "
            f"| {fmt(result['baseline'].get('downtime_s'), 2, ' s')} "
            f"| {fmt(result.get('bare_downtime_s'), 3, ' s')} "
            f"| {fmt(stop.get('downtime_s'), 3, ' s')} "
            f"({fmt(stop.get('phases', {}).get('snapshot'), 3, ' s')}) "
            f"| {fmt(online.get('downtime_s'), 3, ' s') if online else 'refused'} "
            f"| {fmt(physical.get('cp_s'), 2, ' s')} | {fmt(physical.get('cp_zstd_s'), 2, ' s')} "
            f"| {fmt(stop.get('phases', {}).get('export'), 2, ' s')} / "
            f"{fmt(online.get('phases', {}).get('export'), 2, ' s')} "
            f"| {fmt(result.get('idle_commit_p99_ms'), 1, ' ms')} / "
            f"{fmt(online.get('commit_p99_ms'), 1, ' ms')} "
            f"| {fmt(stop.get('peak_rss_mib'), 0, ' MiB')} "
            f"| {fmt((stop.get('bytes_written') or 0) / 1e9, 2, ' GB')} |")
    lines += ["", "| scenario | target | measured | bound | |", "|---|---|---|---|---|"]
    for result in document["scenarios"]:
        for name, verdict in result["targets"].items():
            lines.append(f"| {result['label']} | {name} | {verdict['value']} | "
                         f"{verdict['bound']} | {'met' if verdict['met'] else '**missed**'} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite-sizes", default="1,4", help="GiB, comma-separated (1,4)")
    parser.add_argument("--mysql-sizes", default="1", help="GiB, comma-separated (1)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/scale.json")
    parser.add_argument("--table", type=Path, metavar="RESULTS",
                        help="print a results file as docs/benchmarks.md's tables; measure nothing")
    args = parser.parse_args()
    if args.table:
        import json

        print("\n".join(markdown(json.loads(args.table.read_text()))))
        return 0

    def sizes(text: str) -> list[int]:
        return [int(float(part) * GIB) for part in text.split(",") if part.strip()]

    args.sqlite_sizes, args.mysql_sizes = sizes(args.sqlite_sizes), sizes(args.mysql_sizes)
    ROOT.mkdir(parents=True, exist_ok=True)
    work = ROOT / "work"
    work.mkdir(exist_ok=True)
    document = {"created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": machine(), "targets": TARGETS, "probe_period_s": PROBE_PERIOD,
                "trials_bare": TRIALS, "scenarios": []}
    for scenario in scenario_list(args):
        print(f"{scenario['label']}: seeding and measuring...", flush=True)
        result = measure(scenario, work)
        document["scenarios"].append(result)
        write_json(args.out, document)
        print_row(result)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
