"""farm's queue against task-spooler, nq and a bare loop; see bench/queue.sh.

Beside the peers runs the floor of farm's design (bench/queue/floor.c): one
supervisor forked per task from a small static process, as many at a time
as farm's jobs, with no queue, log or events. farm cannot go below it; how
far above it farm is does not depend on how fast tsp happens to be.

Every figure is the median of REPEATS runs on a fresh queue; ratios are
farm / peer (below 1 means farm is faster), the median of the ratios of
runs taken in the same round. farm runs with its default
durability (normal: every commit survives a crash of farmd).
"""
import json, os, shutil, socket, statistics, subprocess, sys, tempfile, time

# Directories the runs leave, removed when the benchmark ends. Removing
# thousands of files between runs slows the next runs that create files
# (tsp and nq make one per job: ext4 passes over recently freed inodes while
# it looks for a free one, and writeback of the removal competes): tsp took
# 0.90-0.93 s a run with removals deferred and 1.0 s rising to 1.45 s with
# each run's files removed before the next, on the same machine. Deferring
# keeps every peer's runs as fast as it is in use.
LATER = []

BIN = sys.argv[1]
REPEATS = int(sys.argv[2])
FARM = os.path.join(BIN, "farm")
N = 1000
JOBS = 2


def sh(cmd, env=None, check=True):
    return subprocess.run(cmd, shell=True, env=env, check=check,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def farm_env(home):
    e = dict(os.environ)
    e["FARM_HOME"] = home
    e["NO_COLOR"] = "1"
    return e


class Farm:
    def __init__(self, *opts):
        self.dir = tempfile.mkdtemp(prefix="fq.", dir="/tmp")
        self.home = os.path.join(self.dir, "h")
        self.env = farm_env(self.home)
        self.opts = " ".join(opts)
        self.run(f"daemon start --jobs {JOBS} {self.opts}")

    def run(self, args, out=False):
        r = subprocess.run(f"{FARM} {args}", shell=True, env=self.env, check=True,
                           stdout=subprocess.PIPE if out else subprocess.DEVNULL)
        return r.stdout.decode() if out else None

    def pid(self):
        return int(open(os.path.join(self.home, "farmd.pid")).read())

    def wait_ids(self, path):
        """Waits for the tasks whose ids `farm submit` wrote to `path`, as a
        script would: it has the ids from the submit."""
        ids = open(path).read().split()
        # farm wait takes every id; chunk to keep the command line short
        for k in range(0, len(ids), 5000):
            self.run("wait " + " ".join(ids[k:k + 5000]))

    def call(self, req):
        s = socket.socket(socket.AF_UNIX)
        s.connect(os.path.join(self.home, "farm.sock"))
        return s

    def close(self):
        subprocess.run(f"{FARM} daemon stop", shell=True, env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        LATER.append(self.dir)


def batch_file(n, path):
    with open(path, "w") as f:
        for _ in range(n):
            f.write('{"cmd": ["/bin/true"]}\n')


def bare_loop(_):
    sh(f"i=0; while [ $i -lt {N} ]; do /bin/true; i=$((i+1)); done")


def floor_run(_):
    # one forked supervisor per task and nothing else: see bench/queue/floor.c
    sh(f"{os.path.join(BIN, 'farm-queue-floor')} {N} {JOBS} /bin/true")


def tsp_setup():
    d = tempfile.mkdtemp(prefix="tsp.", dir="/tmp")
    env = dict(os.environ, TS_SOCKET=os.path.join(d, "sock"), TMPDIR=d)
    sh("tsp -K", env=env, check=False)
    sh(f"tsp -S {JOBS}", env=env)
    return d, env


def tsp_run(ctx):
    _, env = ctx
    sh(f"i=0; while [ $i -lt {N} ]; do tsp /bin/true >/dev/null; i=$((i+1)); done; tsp -w", env=env,
       check=False)
    # tsp -w waits for the last job only: make sure all have finished
    while b"running" in subprocess.run("tsp", shell=True, env=env, stdout=subprocess.PIPE).stdout \
            or b"queued" in subprocess.run("tsp", shell=True, env=env, stdout=subprocess.PIPE).stdout:
        time.sleep(0.01)


def tsp_teardown(ctx):
    d, env = ctx
    sh("tsp -K", env=env, check=False)
    LATER.append(d)


def nq_setup():
    return tempfile.mkdtemp(prefix="nq.", dir="/tmp")


def nq_run(d):
    env = dict(os.environ, NQDIR=d)
    sh(f"i=0; while [ $i -lt {N} ]; do nq -q /bin/true; i=$((i+1)); done; nq -w", env=env)


def farm_loop(f):
    ids = os.path.join(f.dir, "ids")
    f.run(f"submit -- /bin/true >{ids}")  # warm: farmd up, plugin described
    sh(f"i=1; while [ $i -lt {N} ]; do {FARM} submit -- /bin/true; i=$((i+1)); done >>{ids}",
       env=f.env)
    f.wait_ids(ids)


def farm_batch(f):
    path, ids = os.path.join(f.dir, "batch"), os.path.join(f.dir, "ids")
    batch_file(N, path)
    f.run(f"submit --batch {path} >{ids}")
    f.wait_ids(ids)


def cpu_ticks(pid):
    """(own, reaped children's) user+system CPU ticks of `pid`."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12]), int(f[13]) + int(f[14])


def fork_server_pid(farmd_pid):
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
                cmd = open(f"/proc/{d}/cmdline").read()
            except OSError:
                continue
            if int(st[1]) == farmd_pid and "--serve" in cmd:
                return int(d)
    raise RuntimeError("no fork server below farmd")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def proto_submit_ids(sock_path, n, lat=None):
    """n submits on one connection; returns the new ids (latencies in lat)."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    f = s.makefile("rb")
    req = b'{"v":1,"op":"submit","tasks":[{"plugin":"exec","params":{"argv":["/bin/true"]}}]}\n'
    ids = []
    for _ in range(n):
        t0 = time.perf_counter()
        s.sendall(req)
        line = f.readline()
        if lat is not None:
            lat.append(time.perf_counter() - t0)
        r = json.loads(line)
        assert r["ok"], line
        ids.extend(r["ids"])
    s.close()
    return ids


def cancel_ids(sock_path, ids):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall(json.dumps({"v": 1, "op": "cancel", "ids": ids}).encode() + b"\n")
    s.makefile("rb").readline()
    s.close()


def proto_submit(sock_path, n, cancel=False):
    """n submits on one connection; returns per-request latencies (s). With
    cancel, the tasks are cancelled afterwards (the queue is left as found)."""
    lat = []
    ids = proto_submit_ids(sock_path, n, lat)
    if cancel:
        cancel_ids(sock_path, ids)
    return lat


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    print(f"# queue benchmark: {N} no-op tasks, {JOBS} jobs, median of {REPEATS} runs")
    print(f"# machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    # The peers and farm take turns, one run of each per round, so that
    # whatever changes on the machine during the benchmark reaches them all
    # alike. Ratios are medians of the ratios within each round. (What the
    # runs leave is removed at the end: see LATER.)
    peers = [("bare", bare_loop, None, None),
             ("floor", floor_run, None, None),
             ("tsp", tsp_run, tsp_setup, tsp_teardown),
             ("nq", nq_run, nq_setup, LATER.append),
             ("farm_loop", farm_loop, Farm, Farm.close),
             ("farm_batch", farm_batch, Farm, Farm.close)]
    runs = {name: [] for name, _, _, _ in peers}
    for _ in range(REPEATS):
        for name, fn, setup, teardown in peers:
            ctx = setup() if setup else None
            t0 = time.perf_counter()
            fn(ctx)
            runs[name].append(time.perf_counter() - t0)
            if teardown:
                teardown(ctx)
    med = {k: statistics.median(v) for k, v in runs.items()}

    def ratio(a, b):
        return statistics.median(x / y for x, y in zip(runs[a], runs[b]))

    bare, tsp, nq, fl, fb = (med[k] for k in ("bare", "tsp", "nq", "farm_loop", "farm_batch"))
    print(f"tsp runs: {' '.join(f'{t:.3f}' for t in runs['tsp'])} s")
    print(f"bare loop of {N} /bin/true        {bare:7.3f} s   ({ratio('bare', 'tsp'):.2f}x tsp)")
    print(f"supervisor floor, {JOBS} at a time     {med['floor']:7.3f} s   ({ratio('floor', 'tsp'):.2f}x tsp)"
          "  (a forked supervisor per task, no queue)")
    print(f"tsp: {N} submits + drain          {tsp:7.3f} s")
    print(f"nq:  {N} submits + drain          {nq:7.3f} s   ({ratio('nq', 'tsp'):.2f}x tsp)")
    print(f"(a) farm: {N} submits + drain     {fl:7.3f} s   {ratio('farm_loop', 'tsp'):.2f}x tsp"
          f"  (goal <= 0.80)  {ratio('farm_loop', 'nq'):.2f}x nq")
    print(f"(b) farm: --batch {N} + drain     {fb:7.3f} s   {ratio('farm_batch', 'tsp'):.2f}x tsp"
          f"  (goal <= 0.40)")
    print(f"    (b) against the floor: {ratio('farm_batch', 'floor'):.2f}x; 0.40x holds while tsp "
          f"takes at least {fb / 0.4:.3f} s")

    # (c) drain rate of 10,000 queued tasks, and where the CPU time goes:
    # farmd, the fork server (its forks), and the workers with the commands
    # they ran (the fork server's reaped children).
    rates, cpu = [], {"farmd": [], "server": [], "workers": []}
    for _ in range(REPEATS):
        f = Farm()
        try:
            path, ids = os.path.join(f.dir, "batch"), os.path.join(f.dir, "ids")
            batch_file(10000, path)
            f.run("pause")
            f.run(f"submit --batch {path} >{ids}")
            server = fork_server_pid(f.pid())
            c0 = cpu_ticks(f.pid()), cpu_ticks(server)
            t0 = time.perf_counter()
            f.run("resume")
            f.wait_ids(ids)
            rates.append(10000 / (time.perf_counter() - t0))
            c1 = cpu_ticks(f.pid()), cpu_ticks(server)
            tick = os.sysconf("SC_CLK_TCK")
            cpu["farmd"].append((c1[0][0] - c0[0][0]) / tick / 10000)
            cpu["server"].append((c1[1][0] - c0[1][0]) / tick / 10000)
            cpu["workers"].append((c1[1][1] - c0[1][1]) / tick / 10000)
        finally:
            f.close()
    print(f"(c) farm: drain 10,000 queued       {statistics.median(rates):7.0f} tasks/s  (goal >= 1500)")
    print("    CPU per task: farmd {:.0f} us, fork server {:.0f} us, workers and their commands "
          "{:.0f} us".format(*(statistics.median(cpu[k]) * 1e6
                               for k in ("farmd", "server", "workers"))))

    # (d) submit latency, and (e) its cost with 0, 10k, 100k queued;
    # (f) peak RSS and (g) restart time with 100,000 tasks.
    f = Farm()
    try:
        sockp = os.path.join(f.home, "farm.sock")
        f.run("pause")
        cli, cli_ids = [], []
        for _ in range(200):
            t0 = time.perf_counter()
            cli_ids.append(int(f.run("submit -- /bin/true", out=True)))
            cli.append(time.perf_counter() - t0)
        cancel_ids(sockp, cli_ids)
        latd = proto_submit(sockp, 1000, cancel=True)
        print(f"(d) submit latency, farm CLI      p50 {pct(cli, 50) * 1e3:6.2f} ms  p99 {pct(cli, 99) * 1e3:6.2f} ms")
        print(f"    submit latency, socket        p50 {pct(latd, 50) * 1e3:6.3f} ms  p99 {pct(latd, 99) * 1e3:6.3f} ms")
        # (e) compares steady states: the first submits to a brand-new
        # database are cheaper (an empty write-ahead log), so the empty-queue
        # figure is taken after a warm-up whose tasks are cancelled again.
        warm = proto_submit_ids(sockp, 2000)
        cancel_ids(sockp, warm)
        lat0 = proto_submit(sockp, 1000, cancel=True)
        path = os.path.join(f.dir, "batch")
        batch_file(10000, path)
        f.run(f"submit --batch {path} >/dev/null")
        lat10 = proto_submit(sockp, 1000)
        for _ in range(9):
            f.run(f"submit --batch {path} >/dev/null")
        lat100 = proto_submit(sockp, 1000)
        m0, m10, m100 = (statistics.median(x) for x in (lat0, lat10, lat100))
        print(f"(e) submit cost at 0 / 10k / 100k queued: {m0 * 1e3:.3f} / {m10 * 1e3:.3f} / {m100 * 1e3:.3f} ms"
              f"   100k/empty {m100 / m0:.2f}x  (goal <= 1.5)")
        total = sum(json.loads(f.run("daemon status --json", out=True))["counts"].values())
        print(f"(f) farmd peak RSS with {total} tasks queued: "
              f"{rss_kib(f.pid()) / 1024:.1f} MiB  (goal <= 64)")
        restarts = []
        for _ in range(REPEATS):
            f.run("daemon stop")
            t0 = time.perf_counter()
            f.run(f"daemon start --jobs {JOBS}")
            restarts.append(time.perf_counter() - t0)
        print(f"(g) restart with {total} tasks:   {statistics.median(restarts):7.3f} s  (goal <= 1)"
              f"   peak RSS after restart {rss_kib(f.pid()) / 1024:.1f} MiB")
    finally:
        f.close()


try:
    main()
finally:
    for d in LATER:
        shutil.rmtree(d, ignore_errors=True)
