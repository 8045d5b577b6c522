//! `flotilla limits` and `flotilla scopes`: the resource manager's limits and usage.

use std::path::Path;

use flotilla_node::config::{NodeConfig, Overrides};
use flotilla_node::rcmgr::views::{LimitsRow, LimitsView, ScopesView, UsageView};

use super::Client;

/// Prints the effective limits: of the running node, or with `config` (a file) those a
/// node started with it would use on this machine.
pub fn limits(client: &Client, config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let (view, raw) = match config {
        Some(path) => {
            // The data directory is not used here; name one so that none is required.
            let overrides = Overrides {
                data_dir: Some(".".into()),
                ..Overrides::default()
            };
            let c = NodeConfig::load(Some(path), overrides)?;
            let view = LimitsView::of(c.machine, &c.limits, c.allowlist.intervals());
            let raw = serde_json::to_string(&view)?;
            (view, raw)
        }
        None => client.json::<LimitsView>(false, "/rcmgr/limits")?,
    };
    if json {
        println!("{raw}");
        return Ok(());
    }
    println!(
        "machine: {} of memory, {} file descriptors",
        bytes(view.machine.memory_bytes),
        view.machine.fds
    );
    let header = [
        "SCOPE",
        "MEMORY",
        "STREAMS_IN",
        "STREAMS_OUT",
        "STREAMS",
        "CONNS_IN",
        "CONNS_OUT",
        "CONNS",
        "FDS",
    ];
    let rows: Vec<Vec<String>> = view.scopes.iter().map(limits_row).collect();
    print_table(&header, &rows);
    let g = &view.inbound;
    println!(
        "inbound gate: {} connections per /{} (IPv4) or /{} (IPv6) subnet, {}/s (burst {}){}",
        g.conns_per_subnet,
        g.v4_prefix,
        g.v6_prefix,
        g.rate_per_sec,
        g.burst,
        if g.exempt_loopback {
            ", loopback exempt"
        } else {
            ""
        }
    );
    println!("allowlist: {} address ranges", view.allowlist_intervals);
    Ok(())
}

fn limits_row(r: &LimitsRow) -> Vec<String> {
    let mut row = vec![r.scope.clone()];
    for (name, v) in r.fields() {
        row.push(limit(name, v));
    }
    row
}

/// Prints usage against limits of the system, transient, allowlisted, protocol and
/// service scopes, the `top` peers and the refusals so far.
pub fn scopes(client: &Client, top: usize, json: bool) -> anyhow::Result<()> {
    let (view, raw): (ScopesView, _) = client.json(false, &format!("/rcmgr/scopes?top={top}"))?;
    if json {
        println!("{raw}");
        return Ok(());
    }
    let header = [
        "SCOPE",
        "MEMORY",
        "STREAMS_IN",
        "STREAMS_OUT",
        "CONNS_IN",
        "CONNS_OUT",
        "FDS",
    ];
    let mut rows: Vec<Vec<String>> = view
        .scopes
        .iter()
        .map(|r| usage_row(&r.limits.scope, &r.usage, Some(&r.limits)))
        .collect();
    rows.push(usage_row(
        &format!("peers ({})", view.peers),
        &view.peers_usage,
        None,
    ));
    print_table(&header, &rows);

    println!();
    if view.top_peers.is_empty() {
        println!("top peers: none");
    } else {
        println!(
            "top {} peers (limits are each peer's):",
            view.top_peers.len()
        );
        let mut header = header;
        header[0] = "PEER";
        let rows: Vec<Vec<String>> = view
            .top_peers
            .iter()
            .map(|p| usage_row(&p.peer, &p.usage, Some(&view.peer_limits)))
            .collect();
        print_table(&header, &rows);
    }

    println!();
    if view.refusals.is_empty() {
        println!("refusals: none");
    } else {
        println!("refusals since start-up:");
        let rows: Vec<Vec<String>> = view
            .refusals
            .iter()
            .map(|r| {
                vec![
                    r.scope.clone(),
                    r.resource.clone(),
                    r.direction.clone(),
                    r.count.to_string(),
                ]
            })
            .collect();
        print_table(&["SCOPE", "RESOURCE", "DIR", "COUNT"], &rows);
    }
    println!(
        "open scopes: {}, subnets tracked by the inbound gate: {}",
        view.open_scopes, view.gate_subnets
    );
    Ok(())
}

/// A row of `used/limit` cells (or just `used` without limits).
fn usage_row(scope: &str, u: &UsageView, l: Option<&LimitsRow>) -> Vec<String> {
    let limits: Vec<(&str, Option<u64>)> = match l {
        Some(l) => l.fields().to_vec(),
        None => Vec::new(),
    };
    let mut row = vec![scope.to_string()];
    for (name, used) in u.fields() {
        // Totals are not shown in the usage table.
        if name == "streams" || name == "conns" {
            continue;
        }
        let cell = match limits.iter().find(|(n, _)| *n == name) {
            Some(&(_, lim)) => format!("{}/{}", amount(name, used), limit(name, lim)),
            None => amount(name, used),
        };
        row.push(cell);
    }
    row
}

fn amount(resource: &str, v: u64) -> String {
    if resource == "memory" {
        bytes(v)
    } else {
        v.to_string()
    }
}

fn limit(resource: &str, v: Option<u64>) -> String {
    match v {
        None => "unlimited".to_string(),
        Some(v) => amount(resource, v),
    }
}

/// Bytes in the largest binary unit that keeps the number whole, else with one decimal.
fn bytes(v: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut x = v as f64;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    if x.fract() == 0.0 {
        format!("{x:.0} {}", UNITS[unit])
    } else {
        format!("{x:.1} {}", UNITS[unit])
    }
}

/// Prints left-aligned columns.
pub fn print_table<S: AsRef<str>>(header: &[S], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.as_ref().len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.as_ref().to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1024), "1 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(8 << 30), "8 GiB");
        assert_eq!(limit("memory", None), "unlimited");
        assert_eq!(limit("conns", Some(3)), "3");
    }
}
