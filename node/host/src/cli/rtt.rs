//! `flotilla rtt`: a latency table, measured by the node or by one of its connected peers.

use flotilla_core::PeerId;
use flotilla_node::views::RttView;

use super::Client;
use super::rcmgr::print_table;

/// Prints the RTTs measured by `from` (the node itself if `None`) to `peers`.
pub fn rtt(
    client: &Client,
    peers: &[PeerId],
    from: Option<PeerId>,
    json: bool,
) -> anyhow::Result<()> {
    let mut query = vec![("peers", join(peers))];
    if let Some(from) = from {
        query.push(("from", from.to_string()));
    }
    let (rtts, raw): (Vec<RttView>, _) = client.json_with(false, "/rtt", &query)?;
    if json {
        println!("{raw}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rtts
        .iter()
        .map(|r| {
            vec![
                r.peer_id.to_string(),
                format!("{:.2}", r.rtt_ms),
                format!("{:.2}", r.jitter_ms),
                r.samples.to_string(),
            ]
        })
        .collect();
    print_table(&["PEER ID", "RTT MS", "JITTER MS", "SAMPLES"], &rows);
    let missing: Vec<PeerId> = peers
        .iter()
        .filter(|p| !rtts.iter().any(|r| r.peer_id == **p))
        .copied()
        .collect();
    if !missing.is_empty() {
        let by = from.map_or_else(|| "this node".to_string(), |p| p.to_string());
        println!("(not measured by {by}: {})", join(&missing));
    }
    Ok(())
}

fn join(peers: &[PeerId]) -> String {
    peers
        .iter()
        .map(PeerId::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
