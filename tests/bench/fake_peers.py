"""Small in-process stand-ins for beanstalkd and Redis, for testing bench/peer_load without the
real servers (which the tests must not need).

Each speaks just the part of its protocol that peer_load uses, over TCP on 127.0.0.1 with a free
port, and honours delays with the real clock, so that a client that computes due times wrongly
sees jobs "early". Both record what they received, for the tests to compare with what peer_load
printed.

As programs, they stand in for the real servers in bench/compare.py's test; the arguments are
those compare.py gives the real ones, of which only the port matters:

  fake_peers.py beanstalkd -l 127.0.0.1 -p <port> -b <dir>
  fake_peers.py redis-server --bind 127.0.0.1 --port <port> ...

  FakeBeanstalkd: use, watch, ignore, put <pri> <delay> <ttr> <bytes>, reserve-with-timeout,
                  delete. Jobs become ready `delay` whole seconds after the put arrived.
  FakeRedis:      SCRIPT LOAD, ZADD key score member, EVALSHA <sha of the take script> 1 key
                  <max score> <limit> (ZRANGEBYSCORE -inf max LIMIT 0 limit, then ZREM).
"""

import hashlib
import signal
import sys
import heapq
import socketserver
import threading
import time


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Fake:
    def __init__(self, handler, port=0):
        self.lock = threading.Condition()
        fake = self

        class Handler(handler):
            pass

        Handler.fake = fake
        self._server = _Server(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


class _BeanstalkHandler(socketserver.StreamRequestHandler):
    fake = None

    def handle(self):
        use, watching = "default", {"default"}
        while True:
            line = self.rfile.readline()
            if not line:
                return
            words = line.decode().rstrip("\r\n").split(" ")
            cmd = words[0]
            if cmd == "use":
                use = words[1]
                self.wfile.write(f"USING {use}\r\n".encode())
            elif cmd == "watch":
                watching.add(words[1])
                self.wfile.write(f"WATCHING {len(watching)}\r\n".encode())
            elif cmd == "ignore":
                watching.discard(words[1])
                self.wfile.write(f"WATCHING {len(watching)}\r\n".encode())
            elif cmd == "put":
                delay, size = int(words[2]), int(words[4])
                body = self.rfile.read(size + 2)[:size]
                job_id = self.fake.put(use, delay, body)
                self.wfile.write(f"INSERTED {job_id}\r\n".encode())
            elif cmd == "reserve-with-timeout":
                job = self.fake.reserve(watching, float(words[1]))
                if job is None:
                    self.wfile.write(b"TIMED_OUT\r\n")
                else:
                    job_id, body = job
                    self.wfile.write(f"RESERVED {job_id} {len(body)}\r\n".encode() + body + b"\r\n")
            elif cmd == "delete":
                self.wfile.write(b"DELETED\r\n" if self.fake.delete(int(words[1])) else b"NOT_FOUND\r\n")
            else:
                self.wfile.write(b"UNKNOWN_COMMAND\r\n")
            self.wfile.flush()


class FakeBeanstalkd(_Fake):
    def __init__(self, port=0):
        super().__init__(_BeanstalkHandler, port)
        self.next_id = 0
        self.delayed = []  # heap of (ready time, id)
        self.ready = {}  # tube -> list of ids, in order
        self.jobs = {}  # id -> (tube, delay, body, reserved)
        self.puts = []  # (tube, delay, body) of every put, in order
        self.deleted = 0

    def put(self, tube, delay, body):
        with self.lock:
            self.next_id += 1
            job_id = self.next_id
            self.jobs[job_id] = [tube, delay, body, False]
            self.puts.append((tube, delay, body))
            if delay > 0:
                heapq.heappush(self.delayed, (time.monotonic() + delay, job_id))
            else:
                self.ready.setdefault(tube, []).append(job_id)
            self.lock.notify_all()
            return job_id

    def _promote(self, now):
        while self.delayed and self.delayed[0][0] <= now:
            _, job_id = heapq.heappop(self.delayed)
            self.ready.setdefault(self.jobs[job_id][0], []).append(job_id)

    def reserve(self, watching, timeout_s):
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while True:
                now = time.monotonic()
                self._promote(now)
                for tube in watching:
                    if self.ready.get(tube):
                        job_id = self.ready[tube].pop(0)
                        self.jobs[job_id][3] = True
                        return job_id, self.jobs[job_id][2]
                if now >= deadline:
                    return None
                wake = deadline
                if self.delayed:
                    wake = min(wake, self.delayed[0][0])
                self.lock.wait(max(0.0005, wake - now))

    def delete(self, job_id):
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or not job[3]:
                return False
            del self.jobs[job_id]
            self.deleted += 1
            return True


class _RedisHandler(socketserver.StreamRequestHandler):
    fake = None

    def _read_command(self):
        line = self.rfile.readline()
        if not line:
            return None
        assert line.startswith(b"*"), line
        args = []
        for _ in range(int(line[1:])):
            size = int(self.rfile.readline()[1:])
            args.append(self.rfile.read(size + 2)[:size])
        return args

    def handle(self):
        while True:
            args = self._read_command()
            if args is None:
                return
            self.wfile.write(self.fake.execute(args))
            self.wfile.flush()


def _bulk(value):
    return b"$%d\r\n%s\r\n" % (len(value), value)


class FakeRedis(_Fake):
    def __init__(self, port=0):
        super().__init__(_RedisHandler, port)
        self.scripts = {}
        self.sets = {}  # key -> {member: score}
        self.heaps = {}  # key -> heap of (score, member), entries may be stale
        self.zadds = []  # (key, score, member) of every ZADD, in order
        self.taken = 0

    def execute(self, args):
        cmd = args[0].upper()
        with self.lock:
            if cmd == b"SCRIPT" and args[1].upper() == b"LOAD":
                sha = hashlib.sha1(args[2]).hexdigest().encode()
                self.scripts[sha] = args[2]
                return _bulk(sha)
            if cmd == b"ZADD" and len(args) == 4:
                key, score, member = args[1], float(args[2]), args[3]
                self.zadds.append((key, score, member))
                members = self.sets.setdefault(key, {})
                new = member not in members
                members[member] = score
                heapq.heappush(self.heaps.setdefault(key, []), (score, member))
                return b":%d\r\n" % new
            if cmd == b"EVALSHA":
                script = self.scripts.get(args[1])
                if script is None:
                    return b"-NOSCRIPT No matching script.\r\n"
                if b"ZRANGEBYSCORE" not in script or b"ZREM" not in script or args[2] != b"1":
                    return b"-ERR the fake knows only the take script\r\n"
                return self._take(args[3], float(args[4]), int(args[5]))
            return b"-ERR unknown command '%s'\r\n" % args[0]

    def _take(self, key, max_score, limit):
        members, heap, out = self.sets.get(key, {}), self.heaps.get(key, []), []
        while heap and len(out) < limit and heap[0][0] <= max_score:
            score, member = heapq.heappop(heap)
            if members.get(member) == score:
                del members[member]
                out.append(member)
        self.taken += len(out)
        return b"*%d\r\n" % len(out) + b"".join(_bulk(m) for m in out)


def main(argv):
    kind, args = argv[1], argv[2:]
    flag = "-p" if kind == "beanstalkd" else "--port"
    port = int(args[args.index(flag) + 1])
    fake = FakeBeanstalkd(port) if kind == "beanstalkd" else FakeRedis(port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with fake:
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
