# Garbage, truncated JSON, a 10 MiB line, an unknown op and a wrong protocol
# version each get an error (or a closed connection for the oversized one)
# while another client's submit still works. A connection from another uid
# is refused (when the test runs as root and can switch uid).
. "$(dirname "$0")/lib.sh"
start_farmd
cat >"$T/proto.py" <<'P'
import json, os, socket, sys, threading
path = os.path.join(os.environ["FARM_HOME"], "farm.sock")

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(20)
    return s

def reply(s):
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(65536)
        if not d:
            return None
        buf += d
    return json.loads(buf)

def expect_error(payload, code):
    s = conn()
    s.sendall(payload)
    r = reply(s)
    assert r is not None and r["ok"] is False, (payload[:60], r)
    assert r["error"]["code"] == code, (payload[:60], r)
    assert r["error"]["message"], r
    s.close()
    return r

# A slow client holds a connection open with half a request.
idle = conn()
idle.sendall(b'{"v":1,"op":"sta')

expect_error(b"hello there\n", "FARM_EBADREQ")
expect_error(b'{"v":1,"op":"status"\n', "FARM_EBADREQ")          # truncated JSON
expect_error(b'[1,2,3]\n', "FARM_EBADREQ")                        # not an object
expect_error(b'{"v":1,"op":"frobnicate"}\n', "FARM_EBADOP")
expect_error(b'{"v":99,"op":"status"}\n', "FARM_EBADVER")
expect_error(b'{"op":"status"}\n', "FARM_EBADVER")
# A task id that is missing or not one is a bad request; a good one of no
# task is "no such task".
for op in (b"show", b"retry", b"metrics", b"artifacts"):
    expect_error(b'{"v":1,"op":"' + op + b'"}\n', "FARM_EBADREQ")
    expect_error(b'{"v":1,"op":"' + op + b'","id":"7"}\n', "FARM_EBADREQ")
    expect_error(b'{"v":1,"op":"' + op + b'","id":0}\n', "FARM_EBADREQ")
    expect_error(b'{"v":1,"op":"' + op + b'","id":999999}\n', "FARM_ENOTASK")
expect_error(b'{"v":1,"op":"submit","tasks":[{"plugin":"nope"}]}\n', "FARM_ENOPLUGIN")
expect_error(b'{"v":1,"op":"submit","tasks":[{"plugin":"exec","params":{"run":5}}]}\n', "FARM_EBADPARAM")
expect_error(b'{"v":1,"op":"submit","tasks":[{"plugin":"exec","params":{"bogus":"x","run":"true"}}]}\n', "FARM_EBADPARAM")

# 10 MiB on one line: an error reply, then the connection is closed.
big = conn()
def send_big():
    try:
        big.sendall(b'{"v":1,"op":"status","pad":"' + b"x" * (10 << 20) + b'"}\n')
    except OSError:
        pass
t = threading.Thread(target=send_big)
t.start()
r = reply(big)
assert r is not None and r["error"]["code"] == "FARM_ETOOBIG", r
t.join(20)
try:
    closed = big.recv(1 << 20) == b""
except ConnectionResetError:
    closed = True
assert closed, "the oversized connection stayed open"

# Meanwhile another client's submit works.
s = conn()
s.sendall(b'{"v":1,"op":"submit","tasks":[{"plugin":"exec","params":{"argv":["true"]}}]}\n')
r = reply(s)
assert r["ok"] is True and len(r["ids"]) == 1, r
tid = r["ids"][0]
# wait: the task objects as show gives them (by default, or with full),
# without their details (full: false), or only a table's fields (brief).
keys = {}
for kind, extra in (("default", ""), ("plain", ',"full":false'), ("full", ',"full":true'),
                    ("brief", ',"brief":true')):
    s.sendall(('{"v":1,"op":"wait","ids":[%d]%s}\n' % (tid, extra)).encode())
    w = reply(s)
    assert w["ok"] is True and w["tasks"][0]["id"] == tid and w["tasks"][0]["state"] == "succeeded", w
    keys[kind] = list(w["tasks"][0])
assert keys["brief"] == ["id", "state", "exit_code", "plugin", "task", "reason", "created_at",
                         "started_at", "finished_at", "deps"], keys["brief"]
assert set(keys["brief"]) < set(keys["plain"]) < set(keys["full"]), keys
assert "params" in keys["plain"] and "attempt_history" in keys["full"], keys
assert keys["default"] == keys["full"], keys
print(tid)
idle.close()
P
id=$("$PY" "$T/proto.py") || fail "protocol checks"
expect_status "submit after garbage succeeds" 0 farm wait "$id"
farm daemon status >/dev/null || fail "farmd died"

# Another uid: open the path for the test, connect as nobody.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    chmod 0711 "$T" "$FARM_HOME"
    chmod 0666 "$FARM_HOME/farm.sock"
    out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$PY" -c '
import json, os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["FARM_HOME"] + "/farm.sock")
# farmd answers a refused peer at once, before any request.
print(s.recv(65536).decode().strip())
') || fail "could not connect as another uid"
    expect_contains "other uid refused" FARM_EPERM "$out"
    chmod 0700 "$FARM_HOME"
    chmod 0600 "$FARM_HOME/farm.sock"
else
    echo "protocol: not root: skipping the other-uid check"
fi
farm daemon status >/dev/null || fail "farmd died"
# The socket and home have the documented modes.
expect_eq "socket mode" 600 "$(stat -c %a "$FARM_HOME/farm.sock")"
expect_eq "home mode" 700 "$(stat -c %a "$FARM_HOME")"
echo "protocol: ok"
