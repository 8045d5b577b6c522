//! Trace lines: every kind's layout, digests, and streaming equal to memory.

use std::sync::Mutex;

use flotilla_core::{AdvertError, Direction};

use super::*;
use crate::scenario::Scenario;
use crate::world::sim_addr;

fn world() -> World {
    let text = "name = \"t\"\nduration_s = 10\n[peers]\ncount = 50\n";
    World::build(&Scenario::parse(text, "t.toml").unwrap(), 1, sim_addr)
}

fn at(us: u64) -> Timestamp {
    World::epoch() + Duration::from_micros(us)
}

fn write_all_kinds(t: &mut Trace, w: &World) {
    let p = |i: usize| w.peer(i).peer_id;
    let stranger = PeerId::from_public_key([3; 32]);
    t.node_started(at(0), 17, "eu-west", Duration::from_micros(12_345), true);
    t.event(
        at(1),
        17,
        &Event::Dialing {
            peer: Some(p(42)),
            addr: sim_addr(42),
        },
    );
    t.event(
        at(2),
        17,
        &Event::Dialing {
            peer: None,
            addr: sim_addr(0),
        },
    );
    t.event(
        at(3),
        17,
        &Event::DialFailed {
            peer: Some(p(42)),
            reason: "refused".into(),
        },
    );
    t.event(
        at(4),
        17,
        &Event::Connected {
            peer: p(42),
            direction: Direction::Outbound,
        },
    );
    t.event(at(5), 17, &Event::Disconnected { peer: p(42) });
    t.event(
        at(6),
        17,
        &Event::Dropping {
            peer: p(42),
            reason: "high_watermark",
        },
    );
    t.event(at(7), 17, &Event::Hello { peer: p(42) });
    t.event(
        at(12_345_678),
        17,
        &Event::Rtt {
            peer: p(42),
            nonce: 9,
            rtt: Duration::from_micros(83_512),
        },
    );
    t.event(
        at(9),
        17,
        &Event::PingTimeout {
            peer: p(42),
            nonce: 9,
            failures: 2,
        },
    );
    t.event(
        at(10),
        17,
        &Event::PeersLearned {
            from: p(3),
            received: 32,
            new: 12,
            rejected: 0,
            filtered: 0,
        },
    );
    t.event(
        at(11),
        17,
        &Event::AdvertRejected {
            from: stranger,
            reason: AdvertError::Expired,
        },
    );
    t.run_ended(at(600_000_000), 10, 8, 1, 1);
}

#[test]
fn every_kind_has_its_documented_layout() {
    let w = world();
    let mut t = Trace::new(&w);
    write_all_kinds(&mut t, &w);
    let stranger = PeerId::from_public_key([3; 32]).short();
    let expected = format!(
        "    0.000000 n17 start eu-west lm=12.345ms boot
    0.000001 n17 dial n42
    0.000002 n17 dial ? /dns4/n0/tcp/4001
    0.000003 n17 dial-failed n42 refused
    0.000004 n17 conn+ n42 out
    0.000005 n17 conn- n42
    0.000006 n17 drop n42 high_watermark
    0.000007 n17 hello n42
   12.345678 n17 rtt n42 83.512ms
    0.000009 n17 ping-timeout n42 failures=2
    0.000010 n17 peers n3 recv=32 new=12 rej=0
    0.000011 n17 advert-rejected ?{stranger} expired
  600.000000 -- end sent=10 delivered=8 dropped=1 in_flight=1
"
    );
    assert_eq!(String::from_utf8(t.text().to_vec()).unwrap(), expected);
    assert_eq!((t.events(), t.lines()), (11, 13));
}

/// A sink the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn streaming_writes_the_same_bytes_and_digest() {
    let w = world();
    let mut memory = Trace::new(&w);
    let sink = Shared::default();
    let mut streamed = Trace::with_sink(&w, Box::new(sink.clone()));
    for _ in 0..30_000 {
        write_all_kinds(&mut memory, &w);
        write_all_kinds(&mut streamed, &w);
    }
    streamed.flush().unwrap();
    assert!(streamed.text().is_empty());
    assert_eq!(*sink.0.lock().unwrap(), memory.text());
    assert_eq!(streamed.digest(), memory.digest());
    let mut other = Trace::new(&w);
    other.event(
        at(0),
        1,
        &Event::Hello {
            peer: w.peer(2).peer_id,
        },
    );
    assert_ne!(other.digest(), memory.digest());
}

struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("disk full"))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_errors_surface_at_flush() {
    let w = world();
    let mut t = Trace::with_sink(&w, Box::new(Broken));
    write_all_kinds(&mut t, &w);
    assert_eq!(t.flush().unwrap_err().to_string(), "disk full");
}

#[test]
fn numbers_are_written_like_format_does() {
    for n in [0u64, 7, 10, 99_999, 100_000, 123_456, 999_999, u64::MAX] {
        for (width, pad) in [(0, b'0'), (5, b' '), (6, b'0')] {
            let mut buf = Vec::new();
            super::push_number(&mut buf, n, width, pad);
            let want = if pad == b' ' {
                format!("{n:>width$}")
            } else {
                format!("{n:0width$}")
            };
            assert_eq!(String::from_utf8(buf).unwrap(), want);
        }
    }
}
