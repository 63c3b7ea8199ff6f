"""bench/procs.py -- what /proc says about processes, memory and CPU.

Only the standard library; every figure is read, none is estimated.
"""

import os
import resource
import threading
import time

KiB = 1024


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (state, ppid,
    ...; utime is [11]), or None when the process is gone."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    return st[st.rindex(")") + 2:].split()


def all_pids():
    """Every PID in /proc now."""
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def children_by_parent(ppids):
    """{ppid: [pid, ...]} from {pid: ppid}."""
    children = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    return children


def descendants(root, children):
    """root and every PID below it in children ({ppid: [pid]})."""
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def proc_tree(root):
    """PIDs of root and all its descendants (from /proc/*/stat ppid)."""
    ppids = {}
    for pid in all_pids():
        fields = proc_stat(pid)
        if fields is not None:
            ppids[pid] = int(fields[1])
    return descendants(root, children_by_parent(ppids))


def wait_tree_idle(root, timeout=20.0):
    """Wait until root has no descendants left (downloads finished).
    Returns False when some are still there after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(proc_tree(root)) == 1:
            return True
        time.sleep(0.1)
    return False


# ---- memory --------------------------------------------------------------

def private_kib(pids):
    """Sum of Private_Clean + Private_Dirty (KiB) over pids."""
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith(("Private_Clean:", "Private_Dirty:")):
                        total += int(line.split()[1])
        except OSError:
            pass    # exited meanwhile
    return total


FILE_KINDS = ("offload_daemon", "libc", "loader", "other files")


def mapping_kind(name):
    """The kind of a named smaps mapping: stack, heap, the program's own
    file, libc, the loader, other files, [vdso]-style, or anonymous."""
    base = os.path.basename(name)
    if name == "[stack]":
        return "stack"
    if name == "[heap]":
        return "heap"
    if base == "offload_daemon":
        return "offload_daemon"
    if base.startswith("libc."):
        return "libc"
    if base.startswith("ld-linux"):
        return "loader"
    if name.startswith("/"):
        return "other files"
    if name.startswith("["):
        return name
    return "anonymous"


def private_by_mapping(pid):
    """One process's Private_Clean + Private_Dirty (KiB) by kind of
    mapping (see mapping_kind; an unnamed mapping right after a file's is
    that file's BSS), from /proc/PID/smaps. {} when the process is gone."""
    out, kind, prev_end, prev_kind = {}, None, None, None
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    parts = line.split()
                    name = parts[5] if len(parts) > 5 else ""
                    start, end = first.split("-")
                    follows = prev_end == start and prev_kind in FILE_KINDS
                    prev_end = end
                    if not name and follows:
                        kind = prev_kind + " BSS"
                        continue
                    kind = prev_kind = mapping_kind(name)
                elif first in ("Private_Clean:", "Private_Dirty:"):
                    out[kind] = out.get(kind, 0) + int(line.split()[1])
    except OSError:
        return {}
    return out


def tcp_mem_kib():
    """The kernel's TCP memory (/proc/net/sockstat 'mem', pages) in KiB."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                pages = int(parts[parts.index("mem") + 1])
                return pages * os.sysconf("SC_PAGE_SIZE") // KiB
    return 0


# ---- CPU -----------------------------------------------------------------

def context_switches():
    """The machine's context switches since boot (/proc/stat 'ctxt')."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("ctxt "):
                return int(line.split()[1])
    return 0


def tree_cpu_seconds(root):
    """CPU seconds (user + system) used so far by root and every process
    below it, including children already reaped (cutime, cstime)."""
    ticks = 0
    for pid in proc_tree(root):
        fields = proc_stat(pid)
        if fields is not None:
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds():
    """CPU seconds the machine spent busy since boot, over all CPUs
    (/proc/stat: user, nice, system, irq, softirq; not idle or steal)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:8]]
                return (v[0] + v[1] + v[2] + v[5] + v[6]) / \
                    os.sysconf("SC_CLK_TCK")
    return 0.0


def children_cpu_seconds():
    """CPU seconds of this script's reaped children (wrk)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class CpuMeter:
    """CPU time per request while wrk runs, by who spent it: wrk, the
    server under test, the base, and the rest of the machine (kernel
    threads, softirqs outside a process, this script)."""

    def __init__(self, server_root, base_root, forks):
        self.roots = {"server": server_root, "base": base_root}
        self.forks = forks      # a process per connection (the daemon)

    def __enter__(self):
        if self.forks:
            wait_tree_idle(self.roots["server"])
        self.t0 = self._now()
        return self

    def _now(self):
        t = {k: tree_cpu_seconds(v) for k, v in self.roots.items()}
        t["wrk"] = children_cpu_seconds()
        t["machine"] = machine_cpu_seconds()
        return t

    def __exit__(self, *exc):
        # a download's process is reaped, and its time counted in the
        # parent's, once the connection is gone
        if self.forks:
            wait_tree_idle(self.roots["server"])
        t1 = self._now()
        self.used = {k: t1[k] - self.t0[k] for k in t1}
        return False

    def per_request_us(self, requests):
        """{wrk, server, base, other: µs per request}."""
        u = dict(self.used)
        u["other"] = max(0.0, u.pop("machine") -
                         u["server"] - u["base"] - u["wrk"])
        return {k: v * 1e6 / max(requests, 1) for k, v in u.items()}


class OtherLoad:
    """CPU time used by processes outside this run (other tests on the
    machine), sampled from /proc/*/stat once a second and summed per
    section. A lower bound: processes born and gone between two samples
    are missed."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK")
        self.section = None
        self.cpu = {}           # section -> CPU seconds of other processes
        self.wall = {}          # section -> seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _times():
        """{pid: (ppid, utime + stime ticks)} of every process now."""
        out = {}
        for pid in all_pids():
            fields = proc_stat(pid)
            if fields is not None:
                out[pid] = (int(fields[1]), int(fields[11]) + int(fields[12]))
        return out

    @staticmethod
    def _others_ticks(prev, cur):
        """Ticks used between two samples by processes not below us."""
        ppids = {pid: ppid for pid, (ppid, _) in cur.items()}
        ours = set(descendants(os.getpid(), children_by_parent(ppids)))
        return sum(ticks - prev[pid][1] for pid, (_, ticks) in cur.items()
                   if pid not in ours and pid in prev)

    def _run(self):
        prev, t_prev = self._times(), time.monotonic()
        while not self._stop.wait(1.0):
            cur, t = self._times(), time.monotonic()
            sec = self.section
            if sec is not None:
                used = self._others_ticks(prev, cur) / self.tick
                self.cpu[sec] = self.cpu.get(sec, 0.0) + used
                self.wall[sec] = self.wall.get(sec, 0.0) + (t - t_prev)
            prev, t_prev = cur, t

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def notes(self):
        """One line per section where others used over 5% of the CPUs."""
        ncpu = os.cpu_count() or 1
        out = []
        for sec, cpu in self.cpu.items():
            wall = self.wall.get(sec, 0.0)
            if wall > 0 and cpu / (wall * ncpu) > 0.05:
                out.append("other processes on the machine used at least "
                           "%.0f CPU-seconds during %s (%.0f%% of %d cores "
                           "over %.0f s): its figures may be disturbed"
                           % (cpu, sec, 100 * cpu / (wall * ncpu), ncpu,
                              wall))
        return out
