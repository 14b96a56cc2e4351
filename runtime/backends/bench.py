"""``python -m backends.bench``: spawn, teardown, RPC and stream costs per backend,
next to baselines measured in the same run (interpreter start, imports,
multiprocessing, a raw trio + msgspec ping-pong over UDS).

Absolute times drift on shared machines; compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable

import msgspec
import trio

import backends


class BackendResult(msgspec.Struct):
    spawn_p50_ms: float
    spawn_p90_ms: float
    spawn_back_to_back_p50_ms: float
    teardown_p50_ms: float
    rpc_p50_us: float
    rpc_p90_us: float
    stream_msgs_per_s: float


class Baselines(msgspec.Struct):
    python_startup_p50_ms: float
    import_runtime_p50_ms: float
    mp_spawn_p50_ms: float
    mp_forkserver_p50_ms: float
    uds_pingpong_p50_us: float


class Report(msgspec.Struct):
    python: str
    results: dict[str, BackendResult]
    baselines: Baselines
    unavailable: dict[str, str] = {}
    checks: dict[str, bool] = {}


async def numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the runtime -------------------------------------------------------------------
async def _ready(backend: str) -> None:
    """Let a backend that prepares children ahead (the subint warm pool) get ready."""
    if backend == "subint":
        from backends.spawn import subint

        await trio.to_thread.run_sync(subint.POOL.wait_ready, 10.0)


async def _measure_backend(backend: str, spawns: int, calls: int, msgs: int) -> BackendResult:
    spawn, back_to_back, teardown, rpc = [], [], [], []
    async with backends.open_nursery(backend=backend) as an:
        await (await an.start_actor("warmup")).cancel_actor()
        for _ in range(spawns):
            t0 = time.perf_counter()
            portal = await an.start_actor("tight")
            await portal.run(os.getpid)
            back_to_back.append((time.perf_counter() - t0) * 1e3)
            await portal.cancel_actor()
        for _ in range(spawns):
            await _ready(backend)
            t0 = time.perf_counter()
            portal = await an.start_actor("bench")
            await portal.run(os.getpid)  # the smallest call: nothing to import first
            t1 = time.perf_counter()
            await portal.cancel_actor()
            spawn.append((t1 - t0) * 1e3)
            teardown.append((time.perf_counter() - t1) * 1e3)
        portal = await an.start_actor("rpc")
        await _ready(backend)  # a re-warming interpreter would hold the shared GIL meanwhile
        for _ in range(50):
            await portal.run(os.getpid)
        for _ in range(calls):
            t0 = time.perf_counter()
            await portal.run(os.getpid)
            rpc.append((time.perf_counter() - t0) * 1e6)
        t0 = time.perf_counter()
        async with portal.open_stream(numbers, msgs) as stream:
            count = sum([1 async for _ in stream])
        rate = count / (time.perf_counter() - t0)
        await portal.cancel_actor()
    return BackendResult(
        spawn_p50_ms=_pct(spawn, 0.5),
        spawn_p90_ms=_pct(spawn, 0.9),
        spawn_back_to_back_p50_ms=_pct(back_to_back, 0.5),
        teardown_p50_ms=_pct(teardown, 0.5),
        rpc_p50_us=_pct(rpc, 0.5),
        rpc_p90_us=_pct(rpc, 0.9),
        stream_msgs_per_s=rate,
    )


# -- baselines -----------------------------------------------------------------------
def _time_command(argv: list[str], n: int) -> float:
    samples = []
    for _ in range(n + 1):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples[1:])


def _trivial() -> None:
    pass


def _time_mp(method: str, n: int) -> float:
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # Preload explicitly: 3.13.0's forkserver ignores the __main__ preload (gh-126631).
        ctx.set_forkserver_preload(["backends.bench"])
    samples = []
    for _ in range(n + 1):
        t0 = time.perf_counter()
        proc = ctx.Process(target=_trivial)  # type: ignore[attr-defined]  # every concrete context has it
        proc.start()
        proc.join()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples[1:])


def _time_mp_elsewhere(method: str, n: int) -> float:
    # From a `-c` main: multiprocessing then has no __main__ module to re-run in
    # each child, as a library user's program would not either.
    code = f"from backends.bench import _time_mp; print(_time_mp({method!r}, {n}))"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(done.stdout.strip())


def _pingpong_server(path: str) -> None:
    """The far end of the ping-pong: decode, re-encode and echo each frame."""

    class Ping(msgspec.Struct, tag=True, array_like=True):
        cid: int
        payload: str

    async def serve() -> None:
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await listener.bind(path)
        listener.listen(1)
        print("ready", flush=True)
        conn, _ = await listener.accept()
        stream = trio.SocketStream(conn)
        enc, dec, buf = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(Ping), bytearray()
        while data := await stream.receive_some(65536):
            buf += data
            while len(buf) >= 4 and len(buf) >= 4 + (size := int.from_bytes(buf[:4], "big")):
                msg = dec.decode(buf[4 : 4 + size])
                del buf[: 4 + size]
                out = enc.encode(msg)
                await stream.send_all(len(out).to_bytes(4, "big") + out)

    trio.run(serve)


async def _pingpong_client(path: str, n: int) -> float:
    class Ping(msgspec.Struct, tag=True, array_like=True):
        cid: int
        payload: str

    stream = await trio.open_unix_socket(path)
    enc, dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(Ping)
    samples, buf = [], bytearray()
    for i in range(n + 200):
        t0 = time.perf_counter()
        out = enc.encode(Ping(i, "x" * 32))
        await stream.send_all(len(out).to_bytes(4, "big") + out)
        while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
            buf += await stream.receive_some(65536)
        size = int.from_bytes(buf[:4], "big")
        dec.decode(buf[4 : 4 + size])
        del buf[: 4 + size]
        samples.append((time.perf_counter() - t0) * 1e6)
    await stream.aclose()
    return statistics.median(samples[200:])


def _time_pingpong(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pp.sock")
        server = subprocess.Popen(
            [sys.executable, "-m", "backends.bench", "--pingpong-server", path],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            return trio.run(_pingpong_client, path, n)
        finally:
            server.kill()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()


def measure_baselines(n: int, pings: int) -> Baselines:
    py = sys.executable
    startup = _time_command([py, "-c", "pass"], n)
    imports = _time_command([py, "-c", "import trio, msgspec"], n) - startup
    return Baselines(
        python_startup_p50_ms=startup,
        import_runtime_p50_ms=imports,
        mp_spawn_p50_ms=_time_mp_elsewhere("spawn", n),
        mp_forkserver_p50_ms=_time_mp_elsewhere("forkserver", n),
        uds_pingpong_p50_us=_time_pingpong(pings),
    )


def checks(report: Report) -> dict[str, bool]:
    """The issue's targets, as ratios within this one run."""
    b, r = report.baselines, report.results
    out: dict[str, bool] = {}
    if "forkserver" in r:
        out["forkserver_spawn<=0.3*python_startup"] = r["forkserver"].spawn_p50_ms <= 0.3 * b.python_startup_p50_ms
    if "trio" in r:
        out["trio_spawn<=1.3*(startup+imports)"] = r["trio"].spawn_p50_ms <= 1.3 * (
            b.python_startup_p50_ms + b.import_runtime_p50_ms
        )
        out["trio_spawn<mp_spawn"] = r["trio"].spawn_p50_ms < b.mp_spawn_p50_ms
    if "subint" in r and "trio" in r:
        out["subint_spawn<trio_spawn"] = r["subint"].spawn_p50_ms < r["trio"].spawn_p50_ms
    for name, res in r.items():
        out[f"{name}_rpc<=2*pingpong"] = res.rpc_p50_us <= 2 * b.uds_pingpong_p50_us
        out[f"{name}_stream>=20000/s"] = res.stream_msgs_per_s >= 20_000
    return out


def run(selected: list[str], spawns: int, calls: int, msgs: int) -> Report:
    available = backends.available_backends()
    results = {
        name: trio.run(_measure_backend, name, spawns, calls, msgs) for name in selected if available[name] is None
    }
    report = Report(
        python=".".join(map(str, sys.version_info[:3])),
        results=results,
        baselines=measure_baselines(max(3, spawns), min(calls * 2, 5000)),
        unavailable={n: r for n, r in available.items() if r and n in selected},
    )
    report.checks = checks(report)
    return report


def _print_human(report: Report, out: Callable[[str], None] = print) -> None:
    out(f"python {report.python}")
    for name, r in report.results.items():
        out(
            f"  {name:10} spawn p50 {r.spawn_p50_ms:8.1f} ms  p90 {r.spawn_p90_ms:8.1f} ms  "
            f"back-to-back p50 {r.spawn_back_to_back_p50_ms:8.1f} ms  "
            f"teardown p50 {r.teardown_p50_ms:7.1f} ms  rpc p50 {r.rpc_p50_us:7.0f} us  "
            f"p90 {r.rpc_p90_us:7.0f} us  stream {r.stream_msgs_per_s:9.0f} msg/s"
        )
    for name, reason in report.unavailable.items():
        out(f"  {name:10} unavailable: {reason}")
    for key, value in msgspec.structs.asdict(report.baselines).items():
        out(f"  baseline {key:24} {value:9.1f}")
    for key, ok in report.checks.items():
        out(f"  {'ok  ' if ok else 'MISS'} {key}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--backends", default=",".join(backends.BACKEND_NAMES), help="comma list (default: all)")
    parser.add_argument("-n", type=int, default=20, help="spawn samples per backend (default 20)")
    parser.add_argument("--rpc-calls", type=int, default=1000)
    parser.add_argument("--stream-msgs", type=int, default=20_000)
    parser.add_argument("--pingpong-server", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pingpong_server:
        _pingpong_server(args.pingpong_server)
        return 0
    selected = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in selected if b not in backends.BACKEND_NAMES]
    if unknown or args.n < 1 or args.rpc_calls < 1 or args.stream_msgs < 1:
        problem = f"unknown backend {unknown[0]!r}" if unknown else "counts must be positive"
        print(
            f"python -m backends.bench: error: {problem} (valid backends: {', '.join(backends.BACKEND_NAMES)})",
            file=sys.stderr,
        )
        return 2
    report = run(selected, args.n, args.rpc_calls, args.stream_msgs)
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        _print_human(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
