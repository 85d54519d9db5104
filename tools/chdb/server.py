"""A current ClickHouse engine behind ClickHouse's HTTP interface, for the tests.

chdb (PyPI `chdb-core`, installed by scripts/bootstrap.sh into .tools/chdb) embeds the ClickHouse
engine in-process: no server, no replication. This script serves one chdb session on 127.0.0.1 the
way a server's HTTP interface does, so that DMP's own code (@clickhouse/client, migrations, writers,
the aggregator, the CLI) runs unchanged against it: `/ping`; `POST /?query=…` with the statement in
the query string and/or the body (an INSERT's rows follow it); `database`, `default_format`, and any
other parameter taken as a setting of that request (`param_*` bind query parameters, as the server
does), reset after it. Errors answer 500 with the engine's own `Code: N. DB::Exception: …` text.

Usage: python3 tools/chdb/server.py DATA_DIR — prints `{"port": N, "version": "…"}` on one line once it listens, and
serves until stdin closes (so it never outlives the test that started it).
"""

import gzip
import json
import re
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".tools" / "chdb"))
import chdb.session  # noqa: E402  (installed by scripts/bootstrap.sh, found through the line above)

# Request parameters that are not settings.
NOT_SETTINGS = {
    "query",
    "database",
    "default_format",
    "query_id",
    "session_id",
    "session_timeout",
    "session_check",
    "user",
    "password",
    "quota_key",
    "role",
    "compress",
    "decompress",
    "enable_http_compression",
}
SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ERROR_CODE = re.compile(r"Code: (\d+)")


def quote(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Engine:
    """One chdb session; the engine is not safe for concurrent use, requests take turns."""

    def __init__(self, path):
        self.session = chdb.session.Session(path)
        self.lock = threading.Lock()
        # chdb's one departure from a server's defaults that matters here: `SELECT 1 + 1` without
        # SELECT would run (`implicit_select`). Every other setting keeps the server default.
        self.session.query("SET implicit_select = 0")

    def run(self, sql, database, settings, fmt):
        with self.lock:
            self.session.query(f"USE {database}")
            names = []
            try:
                for name, value in settings:
                    self.session.query(f"SET {name} = {quote(value)}")
                    names.append(name)
                result = self.session.query(sql, fmt)
                return result.bytes()
            finally:
                for name in names:
                    self.session.query(f"SET {name} = DEFAULT")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine = None

    def log_message(self, *args):  # quiet: the test reports what matters
        pass

    def answer(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()  # the CRLF after each chunk, and after the last (empty) one
                if size == 0:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            data = gzip.decompress(data)
        elif encoding == "deflate":
            data = zlib.decompress(data)
        return data.decode("utf-8")

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        if urlsplit(self.path).path in ("/ping", "/"):
            if "query=" not in self.path:
                self.answer(200, b"Ok.\n")
                return
        self.do_POST()

    def do_POST(self):
        url = urlsplit(self.path)
        params = parse_qsl(url.query, keep_blank_values=True)
        body = self.body() if self.command == "POST" else ""
        query = "\n".join(
            part for part in ([v for k, v in params if k == "query"] + [body]) if part
        )
        database = next((v for k, v in params if k == "database"), None) or "default"
        fmt = next((v for k, v in params if k == "default_format"), None) or "TabSeparated"
        settings = [
            (k, v) for k, v in params if k not in NOT_SETTINGS and SETTING_NAME.match(k)
        ]
        try:
            if not SETTING_NAME.match(database):
                raise ValueError(f"Code: 81. DB::Exception: bad database name {database!r}")
            out = self.engine.run(query, database, settings, fmt)
        except Exception as error:  # the engine's own error text, as a server sends it
            message = str(error)
            match = ERROR_CODE.search(message)
            code = match.group(1) if match else "1001"
            if not match:
                message = f"Code: 1001. DB::Exception: {message}. (STD_EXCEPTION)"
            self.answer(500, (message + "\n").encode(), [("X-ClickHouse-Exception-Code", code)])
            return
        self.answer(200, out, [("X-ClickHouse-Format", fmt)])


def main():
    Handler.engine = Engine(sys.argv[1])
    version = Handler.engine.run("SELECT version()", "default", [], "TabSeparated").decode().strip()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1], "version": version}), flush=True)
    sys.stdin.read()  # until the parent closes it or exits
    server.shutdown()


if __name__ == "__main__":
    main()
