//! The [`Network`] contract on turmoil TCP: dial answers, failures, messages, disconnects
//! and malformed frames.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::{Keypair, SeedTree};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::turmoil_engine::PORT;

fn peer(label: u64) -> PeerId {
    Keypair::generate(&mut SeedTree::new(3).child(label).rng()).peer_id()
}

fn describe(ev: &NetEvent, name: impl Fn(&PeerId) -> &'static str) -> String {
    match ev {
        NetEvent::Connected {
            peer,
            direction,
            dial,
        } => {
            format!(
                "conn+ {} {} {:?}",
                name(peer),
                direction.label(),
                dial.map(|d| d.0)
            )
        }
        NetEvent::Disconnected { peer } => format!("conn- {}", name(peer)),
        NetEvent::DialFailed { dial, .. } => format!("dial-failed {}", dial.0),
        NetEvent::Message { from, message } => format!("msg {} {}", name(from), message.kind()),
        other => format!("{other:?}"),
    }
}

async fn next(net: &mut TurmoilNetwork, name: impl Fn(&PeerId) -> &'static str) -> String {
    describe(&net.next_event().await.unwrap(), name)
}

#[test]
fn addresses_parse() {
    assert_eq!(
        parse_addr("/dns4/n17/tcp/7000"),
        Ok(("n17".to_string(), 7000))
    );
    assert_eq!(
        parse_addr(&addr_of("n3", 7000)),
        Ok(("n3".to_string(), 7000))
    );
    assert_eq!(
        parse_addr("/ip4/10.0.0.1/tcp/1/p2p/12D3"),
        Ok(("10.0.0.1".to_string(), 1))
    );
    assert!(matches!(
        parse_addr("/dns4/n1/udp/7000"),
        Err(AddrError::Shape(_))
    ));
    assert!(matches!(
        parse_addr("/dns4//tcp/7000"),
        Err(AddrError::Shape(_))
    ));
    assert!(matches!(
        parse_addr("/dns4/n1/tcp/x"),
        Err(AddrError::Port(_))
    ));
    assert!(matches!(
        parse_addr("/dns4/n1/tcp/0"),
        Err(AddrError::Port(_))
    ));
    assert!(matches!(parse_addr("n1:7000"), Err(AddrError::Shape(_))));
}

#[test]
fn the_network_keeps_its_contract() {
    let (b, c, r, stranger) = (peer(1), peer(2), peer(3), peer(4));
    let name = move |p: &PeerId| match *p {
        p if p == b => "b",
        p if p == c => "c",
        p if p == r => "r",
        _ => "?",
    };
    let mut sim = turmoil::Builder::new()
        .rng_seed(5)
        .simulation_duration(Duration::from_secs(60))
        .min_message_latency(Duration::from_millis(10))
        .max_message_latency(Duration::from_millis(10))
        .build();
    let b_log = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&b_log);
    sim.host("b", move || {
        let log = Arc::clone(&log);
        async move {
            let mut net = TurmoilNetwork::bind(b, PORT).await?;
            while let Some(ev) = net.next_event().await {
                log.lock().unwrap().push(describe(&ev, name));
            }
            Ok(())
        }
    });
    sim.client("c", async move {
        let mut net = TurmoilNetwork::bind(c, PORT).await?;
        let b_addr = addr_of("b", PORT);
        net.dial(DialId(0), &b_addr, Some(b));
        assert_eq!(next(&mut net, name).await, "conn+ b out Some(0)");
        net.dial(DialId(1), &b_addr, Some(b));
        assert_eq!(
            next(&mut net, name).await,
            "conn+ b out Some(1)",
            "a dial to a connected peer answers at once"
        );
        net.dial(DialId(2), &addr_of("b", PORT + 1), None);
        assert_eq!(
            next(&mut net, name).await,
            "dial-failed 2",
            "nobody listens there"
        );
        net.dial(DialId(3), &addr_of("nowhere", PORT), None);
        assert_eq!(next(&mut net, name).await, "dial-failed 3", "no such host");
        net.dial(DialId(4), "not-an-address", None);
        assert_eq!(next(&mut net, name).await, "dial-failed 4");
        net.send(b, Message::Ping { nonce: 1 });
        net.dial(DialId(5), &b_addr, Some(stranger));
        assert_eq!(
            next(&mut net, name).await,
            "dial-failed 5",
            "the peer id does not match"
        );
        net.disconnect(b);
        assert_eq!(next(&mut net, name).await, "conn- b");
        net.send(b, Message::Ping { nonce: 2 });
        assert_eq!(net.messages_dropped(), 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    });
    sim.client("r", async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut s = turmoil::net::TcpStream::connect(("b", PORT)).await?;
        s.write_all(&32u32.to_be_bytes()).await?;
        s.write_all(r.public_key()).await?;
        let mut preamble = [0u8; 36];
        s.read_exact(&mut preamble).await?;
        assert_eq!(&preamble[4..], b.public_key());
        s.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).await?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
        assert!(rest.is_empty(), "b closes after a malformed frame");
        Ok(())
    });
    sim.run().unwrap();
    let log = b_log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "conn+ c in None",
            "msg c ping",
            "conn- c",
            "conn+ r in None",
            "conn- r"
        ],
        "b sees one connection per peer, the message, and both closes"
    );
}
