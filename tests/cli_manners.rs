//! The CLI's manners (issue 19), with the real `cblogs` against the real
//! `cblogsd`:
//!
//! - `grep_shows_progress_on_a_terminal_only`: under a pseudo-terminal
//!   (util-linux `script`), a grep over many blocks draws a progress line
//!   on stderr (blocks read of total, matches, the time range read) and
//!   wipes it before results and at the end; into a pipe, none.
//! - `completions_and_man_pages`: bash, zsh and fish completions and the
//!   man pages of `cblogs` (and each command), `cblogsd` and
//!   `cblogs-shipper`, made from their own definitions.

use std::process::Command;

use cblogs_core::Stream;
use cblogs_testkit::*;

const WIPE: &str = "\r\x1b[2K";

#[test]
fn grep_shows_progress_on_a_terminal_only() {
    let (_dir, server) = Server::in_temp_dir(Some(SMALL_BLOCKS));
    let mut file = SourceFile::of("www-data/prod/hello", 0, "hello", Stream::Stdout);
    let lines: Vec<String> = (0..2000)
        .map(|i| {
            if i % 100 == 0 {
                format!("{i:05} ERROR disk full on /data{i}")
            } else {
                format!("{i:05} INFO request served in {i} ms with some padding to fill blocks")
            }
        })
        .collect();
    for chunk in lines.chunks(200) {
        server.post_ok(&request(vec![file.batch(chunk)]));
    }
    server.flush();
    let want: Vec<&String> = lines.iter().filter(|l| l.contains("ERROR")).collect();

    // Under a terminal: `script` runs cblogs on a pseudo-terminal and
    // copies what it shows (stdout and stderr) to its own stdout.
    let command = format!(
        "{} --server {} grep ERROR www-data/prod/hello --output raw --color never",
        bin("cblogs").display(),
        server.url
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("CBLOGS_PROGRESS_MS", "0")
        .env_remove("CBLOGS_SERVER")
        .output()
        .expect("run script (util-linux)");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    let first = shown
        .find("cblogs: ")
        .unwrap_or_else(|| panic!("no progress line: {shown:?}"));
    let progress = &shown[first..];
    assert!(
        progress.contains(" blocks, ") && progress.contains(" → "),
        "names blocks read of total and the time range: {shown:?}"
    );
    let drawn = shown.matches("cblogs: ").count();
    assert!(drawn >= 2, "redrawn as the search goes: {shown:?}");
    // Each drawing is wiped: before a result, and at the end.
    assert!(shown.matches(WIPE).count() >= 2 * drawn, "{shown:?}");
    let last_draw = shown.rfind("cblogs: ").unwrap_or(0);
    assert!(
        shown[last_draw..].contains(WIPE),
        "wiped at the end: {shown:?}"
    );
    // What is left once the progress is taken out: the results, in order.
    let results: Vec<&str> = shown
        .split("\r\n")
        .map(|l| l.rsplit(WIPE).next().unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with("cblogs: "))
        .collect();
    assert_eq!(results, want, "{shown:?}");

    // Into a pipe: no progress, not a byte of it.
    let out = cli_with(
        &[
            "--server".as_ref(),
            server.url.as_ref(),
            "grep".as_ref(),
            "ERROR".as_ref(),
            "www-data/prod/hello".as_ref(),
            "--output".as_ref(),
            "raw".as_ref(),
        ],
        &[("CBLOGS_PROGRESS_MS", "0")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr, "",
        "nothing on stderr when it is not a terminal"
    );
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), want);
}

#[test]
fn completions_and_man_pages() {
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(bin(program)).args(args).output().expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, bash, _) = run("cblogs", &["completions", "bash"]);
    assert_eq!(code, Some(0));
    assert!(
        bash.contains("_cblogs()") && bash.contains("complete -F _cblogs"),
        "{bash}"
    );
    assert!(bash.contains("--ignore-case"), "grep's flags complete");
    let (_, zsh, _) = run("cblogs", &["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef cblogs"), "{zsh}");
    let (_, fish, _) = run("cblogs", &["completions", "fish"]);
    assert!(fish.contains("complete -c cblogs"), "{fish}");
    let (code, _, err) = run("cblogs", &["completions", "tcsh"]);
    assert_eq!(code, Some(2), "{err}");

    let (code, page, _) = run("cblogs", &["man"]);
    assert_eq!(code, Some(0));
    assert!(page.contains(".TH cblogs 1"), "{page}");
    assert!(page.contains("grep"), "the commands are listed");
    let (_, grep, _) = run("cblogs", &["man", "grep"]);
    assert!(grep.contains(".TH cblogs-grep 1"), "{grep}");
    assert!(grep.contains("ignore\\-case"), "{grep}");
    let (code, _, err) = run("cblogs", &["man", "nope"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no command 'nope'"), "{err}");
    let (code, page, _) = run("cblogsd", &["--man"]);
    assert_eq!(code, Some(0));
    assert!(
        page.contains(".TH cblogsd 1") && page.contains("data\\-dir"),
        "{page}"
    );
    let (code, page, _) = run("cblogs-shipper", &["--man"]);
    assert_eq!(code, Some(0));
    assert!(
        page.contains(".TH cblogs\\-shipper 1") || page.contains(".TH cblogs-shipper 1"),
        "{page}"
    );
}
