//! A child's output read line by line on a thread of its own, so a test
//! can wait for a line with a deadline (`recv_timeout`) instead of
//! blocking on a read.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver};

/// Every line `r` yields, sent as it is read; the channel closes at EOF.
pub fn lines_to_channel(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
