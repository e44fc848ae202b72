"""What the Python benchmark tools (bench-fanout.py, bench-queues.py,
bench-claims.py) share: their child processes, a private Redis, the store
section of a server's configuration, readings from /proc, percentiles."""

import os
import shutil
import signal
import subprocess
import time

CLK = os.sysconf("SC_CLK_TCK")


def pct(values, p):
    """The p-th percentile (nearest rank); nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))]


def cpu_ticks(pid):
    """utime + stime of a process (clock ticks); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return 0


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_average(n=1):
    """The first n load averages (1, 5, 15 minutes) as text."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:n])


class Processes:
    """Child processes, each logging to a file, stopped with SIGTERM (then
    SIGKILL after 10 s)."""

    def __init__(self):
        self.procs = []

    def spawn(self, cmd, log, env=None):
        p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)

    def start_redis(self, port, out):
        """A private, empty redis-server on `port` that keeps nothing on disk."""
        p = self.spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                        "--save", "", "--appendonly", "no", "--dir", out],
                       os.path.join(out, "redis.log"))
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(port), "ping"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run(["redis-cli", "-p", str(port), "flushall"], capture_output=True, check=True)
        return p


def stores_section(store, out, redis_port):
    """The [drivers] store options for `store` (sqlite: a fresh file under
    `out`; redis: the private Redis on `redis_port`)."""
    if store == "sqlite":
        data = os.path.join(out, "sqlite-data")
        shutil.rmtree(data, ignore_errors=True)
        return (f"message_store = sqlite\nmanagement_store = sqlite\n"
                f"[drivers:message_store:sqlite]\nuri = {data}/zaqar.sqlite\n")
    uri = f"redis://127.0.0.1:{redis_port}?dbid=0"
    return (f"message_store = redis\nmanagement_store = redis\n"
            f"[drivers:message_store:redis]\nuri = {uri}\n"
            f"[drivers:management_store:redis]\nuri = {uri}\n")
