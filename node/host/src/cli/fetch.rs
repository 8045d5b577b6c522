//! `flotilla fetch PEER NAME --out FILE`: the node fetches a file a peer serves over the
//! transfer protocol, in slices short enough for one API call each, resuming every time.

use std::path::Path;

use flotilla_core::PeerId;
use flotilla_node::p2p::transfer::{FetchReport, part_path};

use super::Client;

/// Bytes the node fetches per API call; the next call resumes from the partial file.
const SLICE_BYTES: u64 = 64 << 20;

/// Fetches `name` from `peer` into `out` (made absolute), accepting at most `max_bytes`.
pub fn fetch(
    client: &Client,
    peer: PeerId,
    name: &str,
    out: &Path,
    max_bytes: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let out = std::path::absolute(out)?;
    let mut query = vec![
        ("name", name.to_string()),
        ("out", out.display().to_string()),
        ("session_bytes_max", SLICE_BYTES.to_string()),
    ];
    if let Some(max) = max_bytes {
        query.push(("max_bytes", max.to_string()));
    }
    let mut resumed_from = None;
    loop {
        let (report, raw): (FetchReport, _) =
            client.json_with(true, &format!("/fetch/{peer}"), &query)?;
        let first = *resumed_from.get_or_insert(report.resumed_from);
        if !report.complete {
            if !json {
                eprintln!(
                    "{} of {} bytes in {}",
                    report.resumed_from + report.received,
                    report.size,
                    part_path(&out).display()
                );
            }
            continue;
        }
        if json {
            println!("{raw}");
        } else {
            println!(
                "fetched {name} from {peer} into {}: {} bytes, sha256 {}{}",
                out.display(),
                report.size,
                report.sha256,
                if first > 0 {
                    format!(" (resumed from byte {first})")
                } else {
                    String::new()
                }
            );
        }
        return Ok(());
    }
}
