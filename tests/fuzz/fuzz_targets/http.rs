//! `dtrain hub serve` fed arbitrary requests over a real loopback socket: the
//! server answers or closes, and never panics (a panic in any of its threads
//! aborts the process, which libFuzzer reports), whatever the bytes.
#![no_main]
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use dtrain::hub::serve::{Faults, Limits, Options, Server};
use libfuzzer_sys::fuzz_target;

fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("{info}");
            std::process::abort();
        }));
        let root = std::env::temp_dir().join(format!("dtrain-fuzz-hub-{}", std::process::id()));
        std::fs::create_dir_all(root.join("org/m")).unwrap();
        std::fs::write(root.join("org/m/a.txt"), b"hello").unwrap();
        let opts = Options {
            token: None,
            writers: Vec::new(),
            faults: Faults::default(),
            limits: Limits {
                head_timeout: Duration::from_millis(200),
                ..Limits::default()
            },
        };
        Server::bind(&root, "127.0.0.1:0", opts).unwrap().spawn()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut s) = TcpStream::connect(server()) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(data);
    let _ = s.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = s.take(1 << 20).read_to_end(&mut answer);
});
