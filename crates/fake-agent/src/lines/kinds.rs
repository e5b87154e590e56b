//! The built-in template sets, one per kind of program, written for this
//! project (no line comes from a published log collection). Each imitates
//! the shape of a common log: its timestamp, its fields, its separators,
//! lines that end in `]`, long numbers and ids. All but the web access log,
//! the Python and Java services and the proxy end their lines with `\r`,
//! as logs copied from Windows machines do, so `$` and `\r` are exercised.
//!
//! The numbers in a template are not fixed: [`super::LineGen`] moves them
//! on every repetition, so a set of a few lines makes thousands of
//! distinct ones.

/// The kind of program whose log a template set imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogKind {
    /// An HTTP access log (common log format).
    WebAccess,
    /// A Python web service's logging module output.
    PythonService,
    /// A Java service's logback output.
    JavaService,
    /// An HTTP server's error log: `[date] [level] [client …] message`.
    WebServerErrors,
    /// A Hadoop DataNode and NameNode: block ids, `blk_…`.
    Hdfs,
    /// A Linux syslog: cron, kernel, pam, systemd.
    Syslog,
    /// OpenSSH's sshd, many lines ending in `[preauth]`.
    Sshd,
    /// Android's logcat: pids, tids, levels, tags.
    Logcat,
    /// Windows' servicing log (CBS), padded columns and paths with `\`.
    WindowsCbs,
    /// A phone health app: `|`-separated fields, tags such as `Step_LSC`.
    HealthApp,
    /// A supercomputer's RAS events: node locations such as `R12-M0-N3-C:J07-U01`.
    Supercomputer,
    /// A cluster's node hardware events.
    ClusterNodes,
    /// A cluster's forwarded syslog, each line prefixed with its node.
    ClusterSyslog,
    /// A macOS system log.
    MacOs,
    /// A desktop proxy client's connection log (lines end in a bare `\n`).
    DesktopProxy,
}

impl LogKind {
    /// Every kind, in the order above.
    pub const ALL: [LogKind; 15] = [
        LogKind::WebAccess,
        LogKind::PythonService,
        LogKind::JavaService,
        LogKind::WebServerErrors,
        LogKind::Hdfs,
        LogKind::Syslog,
        LogKind::Sshd,
        LogKind::Logcat,
        LogKind::WindowsCbs,
        LogKind::HealthApp,
        LogKind::Supercomputer,
        LogKind::ClusterNodes,
        LogKind::ClusterSyslog,
        LogKind::MacOs,
        LogKind::DesktopProxy,
    ];

    /// The set's template lines, without line ends.
    pub fn templates(self) -> &'static [&'static str] {
        match self {
            LogKind::WebAccess => &WEB_ACCESS,
            LogKind::PythonService => &PYTHON_SERVICE,
            LogKind::JavaService => &JAVA_SERVICE,
            LogKind::WebServerErrors => &WEB_SERVER_ERRORS,
            LogKind::Hdfs => &HDFS,
            LogKind::Syslog => &SYSLOG,
            LogKind::Sshd => &SSHD,
            LogKind::Logcat => &LOGCAT,
            LogKind::WindowsCbs => &WINDOWS_CBS,
            LogKind::HealthApp => &HEALTH_APP,
            LogKind::Supercomputer => &SUPERCOMPUTER,
            LogKind::ClusterNodes => &CLUSTER_NODES,
            LogKind::ClusterSyslog => &CLUSTER_SYSLOG,
            LogKind::MacOs => &MAC_OS,
            LogKind::DesktopProxy => &DESKTOP_PROXY,
        }
    }

    /// What ends each line before its `\n`: `\r` for the kinds written on
    /// Windows machines (CRLF), nothing for the others.
    pub fn line_end(self) -> &'static str {
        match self {
            LogKind::WebAccess
            | LogKind::PythonService
            | LogKind::JavaService
            | LogKind::DesktopProxy => "",
            _ => "\r",
        }
    }
}

const WEB_ACCESS: [&str; 4] = [
    "10.0.3.17 - - [25/Nov/2026:02:10:11 +0000] \"GET /hello HTTP/1.1\" 200 4242 \"-\" \"Mozilla/5.0\"",
    "10.0.6.80 - - [25/Nov/2026:02:10:11 +0000] \"GET /health HTTP/1.1\" 200 131 \"-\" \"curl/8.4.0\"",
    "10.0.1.9 - - [25/Nov/2026:02:10:12 +0000] \"POST /api/v2/orders/118273 HTTP/1.1\" 201 877 \"-\" \"okhttp/4.12\"",
    "[error] [client 10.0.1.9] File does not exist: /var/www/html/favicon.ico",
];

const PYTHON_SERVICE: [&str; 4] = [
    "2026-11-25 02:10:11,201 INFO  app.handlers request_id=6f1c2a7e user=4411 path=/v1/answer status=200 took_ms=13",
    "2026-11-25 02:10:11,377 DEBUG app.cache hit key=answer:8812 ttl=300",
    "2026-11-25 02:10:12,004 WARNING app.db slow query took_ms=1204 rows=3312",
    "2026-11-25 02:10:12,150 INFO  app.handlers request_id=6f1c2a91 user=3002 path=/v1/ask status=200 took_ms=41",
];

const JAVA_SERVICE: [&str; 4] = [
    "2026-11-25T02:10:11.201Z INFO  [worker-12] c.e.ledger.LedgerService - posted entry 88127731 amount=1200 currency=EUR",
    "2026-11-25T02:10:11.377Z INFO  [worker-3] c.e.ledger.LedgerService - balance account=400112 value=88121",
    "2026-11-25T02:10:12.004Z WARN  [gc] jvm pause young=41ms heap=812M/2048M",
    "2026-11-25T02:10:12.150Z INFO  [http-8080-7] o.e.jetty.RequestLog - GET /ledger/400112 200 17ms",
];

const WEB_SERVER_ERRORS: [&str; 8] = [
    "[Thu Mar 06 09:14:22 2025] [notice] httpd 2.4.62 configured, resuming normal operations",
    "[Thu Mar 06 09:14:22 2025] [notice] balancer member http://10.0.4.12:8080 back in rotation after 31 s",
    "[Thu Mar 06 09:14:23 2025] [error] [client 10.0.7.33] script not found or unable to stat: /srv/www/cgi-bin/status.cgi",
    "[Thu Mar 06 09:14:23 2025] [error] backend http://10.0.4.13:8080 refused the connection, retry in 60 s",
    "[Thu Mar 06 09:14:24 2025] [notice] worker pid 28812 exited on signal 11 [core dumped]",
    "[Thu Mar 06 09:14:25 2025] [warn] [client 10.0.2.91] body of 1048577 bytes over the 1048576 byte limit [rejected]",
    "[Thu Mar 06 09:14:26 2025] [notice] TLS session cache holds 1200 entries [shared memory]",
    "[Thu Mar 06 09:14:27 2025] [error] [client 10.0.9.4] File does not exist: /srv/www/html/robots.txt",
];

const HDFS: [&str; 8] = [
    "250306 091422 148 INFO dfs.DataNode$PacketResponder: responder 2 done with block blk_440192837465512001, closing",
    "250306 091422 35 INFO dfs.FSNamesystem: BLOCK* allocate /user/etl/out/part-00042 as blk_-330291187364550012",
    "250306 091423 149 INFO dfs.DataNode$DataXceiver: receiving blk_771209338446120335 from /10.250.14.38:51530 for /10.250.14.38:50010",
    "250306 091423 150 INFO dfs.DataNode$PacketResponder: got blk_771209338446120335 (67108864 bytes) from /10.250.14.38",
    "250306 091424 31 INFO dfs.FSNamesystem: BLOCK* block map: 10.250.19.102:50010 now holds blk_771209338446120335, 67108864 bytes",
    "250306 091425 152 WARN dfs.DataNode$DataXceiver: 10.250.14.38:50010 failed to send blk_-160899177222604332 to /10.250.6.191",
    "250306 091426 27 INFO dfs.DataBlockScanner: checksum verified for blk_-582991137440101028",
    "250306 091427 153 INFO dfs.DataNode: removing blk_188128991231220334 at /mnt/hadoop/dfs/data/current/subdir12/blk_188128991231220334",
];

const SYSLOG: [&str; 8] = [
    "Mar  6 09:14:01 web-7 CRON[31881]: (root) CMD (cd / && run-parts --report /etc/cron.hourly)",
    "Mar  6 09:14:02 web-7 kernel: [ 8812.441200] eth0: link is up at 1000 Mbps, full duplex, flow control rx/tx",
    "Mar  6 09:14:02 web-7 sshd(pam_unix)[19939]: login refused; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.45",
    "Mar  6 09:14:03 web-7 sshd(pam_unix)[19939]: password check failed for an unknown user",
    "Mar  6 09:14:05 web-7 systemd[1]: Started session 4412 of user alice.",
    "Mar  6 09:14:07 web-7 kernel: [ 8817.100321] oom-killer: killed process 22871 (java), 4012345 kB resident",
    "Mar  6 09:14:09 web-7 ntpd[812]: local clock stepped by 0.004211 s",
    "Mar  6 09:14:11 web-7 su(pam_unix)[20101]: session started for user news by root (uid=0)",
];

const SSHD: [&str; 8] = [
    "Mar  6 09:14:22 bastion-3 sshd[24117]: Failed password for invalid user deploy from 203.0.113.45 port 51234 ssh2",
    "Mar  6 09:14:22 bastion-3 sshd[24117]: Connection closed by invalid user deploy 203.0.113.45 port 51234 [preauth]",
    "Mar  6 09:14:23 bastion-3 sshd[24119]: Accepted publickey for alice from 198.51.100.7 port 40022 ssh2: ED25519",
    "Mar  6 09:14:23 bastion-3 sshd[24119]: pam_unix(sshd:session): session opened for user alice(uid=1004) by (uid=0)",
    "Mar  6 09:14:25 bastion-3 sshd[24121]: Invalid user oracle from 192.0.2.200 port 33120",
    "Mar  6 09:14:25 bastion-3 sshd[24121]: Received disconnect from 192.0.2.200 port 33120:11: bye [preauth]",
    "Mar  6 09:14:27 bastion-3 sshd[24121]: error: too many authentication failures for root from 192.0.2.200 port 33120 ssh2 [preauth]",
    "Mar  6 09:14:29 bastion-3 sshd[24119]: Disconnected from user alice 198.51.100.7 port 40022",
];

const LOGCAT: [&str; 6] = [
    "03-06 09:14:22.811  1702  2395 D PowerManagerService: wake lock acquired tag=\"*alarm*\" uid=1000 pid=1702 flags=0x1 for=WorkSource{10052 com.example.mail}",
    "03-06 09:14:22.820  1702  8671 I ActivityManager: Start proc 23014:com.example.mail/u0a52 for service {com.example.mail/com.example.mail.SyncService} from com.example.store",
    "03-06 09:14:22.907  2227  2227 D StatusBar: panel state changed from 0 to 2, flags=0x0, cause=keyguard.occluded.changed, expanded=false, tracking=false",
    "03-06 09:14:23.015  1702  1816 W WindowManager: window freeze of 2000 ms expired for ActivityRecord{4f1a2c0 u0 com.example.maps/.MainActivity t812} [display 0]",
    "03-06 09:14:23.441 23014 23061 E SyncManager: sync of account=alice@example.com authority=com.example.mail.provider failed: IOException: Connection reset by peer",
    "03-06 09:14:24.002  1702  2395 V AlarmManager: next alarm type=RTC_WAKEUP when=1741252524002 window=0 tag=com.example.mail/.SyncAlarm origin=com.example.mail",
];

const WINDOWS_CBS: [&str; 6] = [
    "2025-03-06 09:14:22, Info                  CBS    Servicing stack 10.0.19041.4412 loaded from C:\\Windows\\WinSxS\\amd64_servicing-stack_31bf3856ad364e35_10.0.19041.4412_none\\cbscore.dll",
    "2025-03-06 09:14:22, Info                  CSI    00000001@2025/3/6:09:14:22.455 transaction engine ready (wcp.dll 0.0.0.6, caller @0x7fed806eb5d)",
    "2025-03-06 09:14:23, Info                  CBS    Session 31172212_1042887123 opened for client UpdateAgent",
    "2025-03-06 09:14:23, Info                  CBS    Applicability of Package_for_KB5034441~31bf3856ad364e35~amd64~~19041.3920.1.3 read from cache: 112, installed: 112",
    "2025-03-06 09:14:24, Warning               CBS    Skipped an element of the manifest [HRESULT = 0x800f080d - CBS_E_MANIFEST_INVALID_ITEM]",
    "2025-03-06 09:14:25, Info                  CBS    Installer finished its final pass in 1412 ms",
];

const HEALTH_APP: [&str; 6] = [
    "20250306-09:14:22:310|Step_LSC|30002312|step counter changed total=4120 delta=3",
    "20250306-09:14:22:318|Step_LSC|30002312|cache flushed steps=4120 at=1741252462000",
    "20250306-09:14:22:401|Step_StandReport|30002312|standing minutes today=37 goal=12",
    "20250306-09:14:23:009|HiH_SyncManager|30002312|upload done records=18 took=412ms",
    "20250306-09:14:23:115|Step_DayTotals|30002312|day=20250306 steps=4120 kcal=131",
    "20250306-09:14:24:002|Step_Screen|30002312|screen turned on",
];

const SUPERCOMPUTER: [&str; 6] = [
    "- 1741252462 2025.03.06 R12-M0-N3-C:J07-U01 2025-03-06-09.14.22.310442 R12-M0-N3-C:J07-U01 RAS KERNEL INFO L2 cache ECC error fixed in place",
    "- 1741252463 2025.03.06 R12-M0-N3-C:J07-U01 2025-03-06-09.14.23.118200 R12-M0-N3-C:J07-U01 RAS KERNEL INFO core file 4412 written for rank 7",
    "- 1741252465 2025.03.06 R05-M1-NC-I:J18-U11 2025-03-06-09.14.25.900311 R05-M1-NC-I:J18-U11 RAS APP FATAL io daemon lost its control stream to 172.16.96.116:33569",
    "KERNTLB 1741252467 2025.03.06 R05-M1-N9-C:J03-U11 2025-03-06-09.14.27.004417 R05-M1-N9-C:J03-U11 RAS KERNEL FATAL translation miss on data address 0x00c1f3a8",
    "- 1741252470 2025.03.06 R12-M0-N3-C:J07-U01 2025-03-06-09.14.30.220871 R12-M0-N3-C:J07-U01 RAS KERNEL INFO 1 memory error found and fixed on rank 0, symbol 12, bit 3",
    "- 1741252471 2025.03.06 R07-M1-L2-U18-C 2025-03-06-09.14.31.004123 R07-M1-L2-U18-C RAS LINKCARD INFO torus link retrained after 3 errors",
];

const CLUSTER_NODES: [&str; 6] = [
    "412233 node-71 node.hw fan.degraded 1741252462 1 fan 3 of node-71 turns at 4120 rpm, under its 5000 rpm floor",
    "412234 node-71 node.hw fan.ok 1741252470 1 fan 3 of node-71 back at 6210 rpm",
    "412240 node-12 node.boot boot.done 1741252481 1 node-12 booted in 212 s (kernel 2.6.32-754)",
    "412245 gige7 switch.port link.errors 1741252490 1 port 17 of gige7: 3120 input errors, 12 CRC",
    "412251 node-88 node.hw temperature.warn 1741252502 1 cpu 1 of node-88 at 91 C, warning at 85 C",
    "412260 node-12 node.job job.end 1741252513 1 job id 88121.head ended with status 0 after 3300 s",
];

const CLUSTER_SYSLOG: [&str; 6] = [
    "- 1741252462 2025.03.06 cn142 Mar 6 09:14:22 cn142/cn142 crond[4412]: (root) CMD (/usr/lib/sa/sa1 1 1)",
    "- 1741252462 2025.03.06 cn142 Mar 6 09:14:22 cn142/cn142 kernel: ib0: joining multicast group ff12:401b:ffff::1 failed, status -22",
    "- 1741252463 2025.03.06 an801 Mar 6 09:14:23 an801/an801 sshd[18812]: Accepted publickey for root from 10.100.4.250 port 41502 ssh2",
    "- 1741252465 2025.03.06 cn211 Mar 6 09:14:25 cn211/cn211 pbs_mom: task 4412.admin could not reply to its manager, will retry",
    "- 1741252468 2025.03.06 cn142 Mar 6 09:14:28 cn142/cn142 ntpd[2910]: synchronized to 10.100.0.1, stratum 2",
    "- 1741252470 2025.03.06 dn228 Mar 6 09:14:30 dn228/dn228 kernel: scsi 0:0:3:0 sense data 0x70 [retrying]",
];

const MAC_OS: [&str; 6] = [
    "Mar  6 09:14:22 mbp-ada kernel[0]: Wi-Fi: link up on en0 at 866 Mbps",
    "Mar  6 09:14:22 mbp-ada launchd[1] (com.example.indexer.4412): exited on signal 9, sent by indexd[88]",
    "Mar  6 09:14:23 mbp-ada Safari[30212]: TLS connection 4412 closed early, error 22",
    "Mar  6 09:14:24 mbp-ada mDNSResponder[212]: query for printer.local took 42 ms, 3 answers",
    "Mar  6 09:14:25 mbp-ada kernel[0]: wl0: 61882.110400: address 10.0.1.23 assigned to en0",
    "Mar  6 09:14:27 mbp-ada Preview[30511]: thumbnail of file:///Users/ada/Downloads/report.pdf not made [timeout]",
];

const DESKTOP_PROXY: [&str; 5] = [
    "[03.06 09:14:22] chrome.exe - proxy.corp.example:3128 open through proxy proxy.corp.example:3128 HTTPS",
    "[03.06 09:14:22] chrome.exe - proxy.corp.example:3128 close, 1402 bytes sent, 5320 bytes received, lifetime 00:02",
    "[03.06 09:14:23] outlook.exe - mail.example.com:443 error : the proxy proxy.corp.example:3128 could not reach the target, status 503",
    "[03.06 09:14:24] slack.exe *64 - edge.example.net:443 open through proxy proxy.corp.example:3128 HTTPS",
    "[03.06 09:14:25] git.exe - git.example.org:22 close, 88120 bytes (86.0 KB) sent, 1200 bytes received, lifetime 00:14",
];
