//! Multi-line errors as programs print them on stderr: Python tracebacks
//! and Java stack traces (one Java trace in 25 an `OutOfMemoryError`, the
//! rare literal searches look for). The line generator interleaves them,
//! and the demo's services print them now and then.

/// Which kind of multi-line error a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKind {
    Python,
    Java,
}

impl TraceKind {
    /// One whole trace, first line first.
    pub fn trace(self, rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
        match self {
            TraceKind::Python => python_traceback(rng),
            TraceKind::Java => java_stack_trace(rng),
        }
    }
}

fn pick<'s>(rng: &mut fastrand::Rng, items: &[&'s str]) -> &'s str {
    items[rng.usize(0..items.len())]
}

fn python_traceback(rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
    const MODULES: [&str; 6] = [
        "handlers",
        "db/pool",
        "rpc/client",
        "cache",
        "views",
        "tasks",
    ];
    const FUNCS: [&str; 6] = ["handle", "get_conn", "call", "fetch", "render", "run"];
    const CODE: [&str; 5] = [
        "return self._pool.acquire(timeout=self.timeout)",
        "resp = self._session.post(url, json=payload)",
        "value = self._store[key]",
        "rows = cursor.fetchall()",
        "raise ValueError(f\"bad record {rid}\")",
    ];
    const ERRORS: [&str; 5] = [
        "KeyError: 'user_",
        "TimeoutError: timed out after ",
        "ConnectionResetError: [Errno 104] Connection reset by peer, request ",
        "ValueError: bad record ",
        "psycopg2.OperationalError: could not connect to server, attempt ",
    ];
    let mut lines = vec![b"Traceback (most recent call last):".to_vec()];
    for _ in 0..rng.usize(2..6) {
        lines.push(
            format!(
                "  File \"/usr/lib/python3.11/site-packages/app/{}.py\", line {}, in {}",
                pick(rng, &MODULES),
                rng.u32(10..900),
                pick(rng, &FUNCS)
            )
            .into_bytes(),
        );
        lines.push(format!("    {}", pick(rng, &CODE)).into_bytes());
    }
    lines.push(format!("{}{}", pick(rng, &ERRORS), rng.u32(1000..99999)).into_bytes());
    lines
}

fn java_stack_trace(rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
    const CLASSES: [&str; 6] = [
        "com.example.ledger.LedgerService",
        "com.example.rpc.ClientPool",
        "com.example.store.SegmentReader",
        "org.eclipse.jetty.server.HttpChannel",
        "io.netty.channel.AbstractChannelHandlerContext",
        "java.util.concurrent.ThreadPoolExecutor",
    ];
    const METHODS: [&str; 5] = ["handle", "invoke", "read", "runWorker", "process"];
    // OutOfMemoryError is the rare one: about one trace in 25.
    let exception = if rng.u32(0..25) == 0 {
        "java.lang.OutOfMemoryError: Java heap space".to_owned()
    } else {
        let e = pick(
            rng,
            &[
                "java.lang.IllegalStateException: pool exhausted, waiters=",
                "java.util.concurrent.TimeoutException: no answer after ms=",
                "java.lang.NullPointerException: segment ",
            ],
        );
        format!("{e}{}", rng.u32(1..5000))
    };
    let mut lines = vec![format!(
        "Exception in thread \"worker-{}\" {exception}",
        rng.u32(0..64)
    )
    .into_bytes()];
    for _ in 0..rng.usize(5..16) {
        let class = pick(rng, &CLASSES);
        let file = class.rsplit('.').next().unwrap_or(class);
        lines.push(
            format!(
                "\tat {class}.{}({file}.java:{})",
                pick(rng, &METHODS),
                rng.u32(20..2000)
            )
            .into_bytes(),
        );
    }
    if rng.bool() {
        lines.push(b"Caused by: java.io.IOException: Connection reset by peer".to_vec());
        lines.push(b"\tat sun.nio.ch.FileDispatcherImpl.read0(Native Method)".to_vec());
        lines.push(format!("\t... {} more", rng.u32(3..30)).into_bytes());
    }
    lines
}
