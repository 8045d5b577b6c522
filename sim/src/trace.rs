//! The trace of a run: one compact line per event, the same for both engines.
//!
//! Every line starts with the simulated time in seconds since the run's epoch (fixed width,
//! microseconds), then the node (`n<index>`, or `--` for the engine itself), then the kind
//! and its fields. Peers are named by their index too; a peer id that is not in the world
//! (which a correct run never shows) is printed as `?` and the last 6 characters of its id.
//!
//! ```text
//!     0.000000 n0 start eu-west lm=12.345ms boot
//!     3.141592 n17 dial n2
//!     3.241592 n17 conn+ n2 out
//!    12.345678 n17 rtt n42 83.512ms
//!    60.000001 n17 peers n3 recv=32 new=12 rej=0
//!   600.000000 -- end sent=1200 delivered=1180 dropped=4 in_flight=16
//! ```
//!
//! Legend, kind by kind (fields in order):
//!
//! | kind | fields | meaning |
//! |---|---|---|
//! | `start` | region, `lm=`last-mile RTT, `boot` if a bootstrap node | the node started (engine line) |
//! | `dial` | peer, or `?` and the address when the peer is not known | a dial started |
//! | `dial-failed` | peer or `?`, reason | a dial failed |
//! | `conn+` | peer, `in` or `out` | the first connection to a peer is up |
//! | `conn-` | peer | the last connection to a peer is down |
//! | `drop` | peer, reason | the node asked to close a connection |
//! | `hello` | peer | the peer's signed hello was verified |
//! | `rtt` | peer, round trip in ms | a pong arrived |
//! | `ping-timeout` | peer, `failures=` consecutive failures | a ping went unanswered |
//! | `peers` | peer, `recv=` records, `new=` new peers, `rej=` rejected | a peer-table exchange answer |
//! | `advert-rejected` | peer that sent it, reason | an advert failed verification |
//! | `end` | `sent=`, `delivered=`, `dropped=`, `in_flight=` messages | the run ended (engine line) |
//! | `fault` | `#`index, kind, `on`/`off`, detail | a partition, loss burst or clock skew began or ended (engine line, fleet) |
//! | `crash` | `running` or `not-started` | the node crashed (engine line, fleet) |
//! | `restart` | `fresh` | the node restarts from a fresh state; its `start` line follows (engine line, fleet) |
//! | `converged` | `after=` seconds since the fault phase ended | the liveness phase saw the network converged (engine line, fleet) |
//! | `failed` | the failure | an invariant broke or the liveness bound passed; the run stops (engine line, fleet) |
//! | `flood` | `#`index, `sent=` messages, or the kind, `held=`, `refused=`, `unconnected=` | one tick of a `[[workload]]` entry (engine line, fleet) |
//! | `deployment` | `#`number, state, and for `failed` the reason's class (`too-few-bids`, `commit-refused`, `commit-timeout`, `provision-timeout`, `worker-failed`, `run-timeout`, `shutdown`, `other`) | one of the node's deployments changed state (`[jobs]`) |
//! | `allocation` | `a`number, requester`#`deployment, state | an allocation on the provider changed state (`[jobs]`; log lines are counted as events, not written) |
//! | `job-refused` | requester`#`deployment, reason | the provider refused a commit (`[jobs]`) |
//! | `refused` | `<scope>.<resource>=<count>`... | what the node's resource manager refused in the minute that ends now, at most one line per node and minute (engine line) |
//!
//! The trace can stay in memory ([`Trace::new`]) or stream to a writer
//! ([`Trace::with_sink`]); either way it keeps a running 64-bit FNV-1a digest of its bytes,
//! so two runs can be compared without keeping their traces.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::deployment::DeployState;
use flotilla_core::jobs::JobEvent;
use flotilla_core::{Event, PeerId, Timestamp};

use crate::jobstats::failure_class;

use crate::timeline::Timeline;
use crate::world::{FastMap, World};

/// Bytes buffered before they are written to a sink.
const SINK_CHUNK_BYTES: usize = 1 << 20;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// A trace writer.
pub struct Trace {
    ids: Arc<FastMap<PeerId, u32>>,
    epoch: Timestamp,
    buf: Vec<u8>,
    sink: Option<Box<dyn Write + Send>>,
    error: Option<io::Error>,
    events: u64,
    lines: u64,
    digest: u64,
    timeline: Timeline,
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trace")
            .field("events", &self.events)
            .field("lines", &self.lines)
            .field("digest", &format_args!("{:016x}", self.digest))
            .field("streaming", &self.sink.is_some())
            .finish_non_exhaustive()
    }
}

/// A peer's name in the trace.
struct Name<'a>(&'a FastMap<PeerId, u32>, Option<&'a PeerId>);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            None => f.write_str("?"),
            Some(p) => match self.0.get(p) {
                Some(i) => write!(f, "n{i}"),
                None => write!(f, "?{}", p.short()),
            },
        }
    }
}

/// Appends `n` in decimal, padded on the left with `pad` to at least `width` bytes.
fn push_number(buf: &mut Vec<u8>, mut n: u64, width: usize, pad: u8) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    buf.extend(std::iter::repeat_n(pad, width.saturating_sub(len)));
    buf.extend_from_slice(&digits[i..]);
}

/// A duration in milliseconds with microsecond precision: `83.512ms`.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        write!(f, "{}.{:03}ms", us / 1000, us % 1000)
    }
}

impl Trace {
    /// A trace of `world` kept in memory.
    pub fn new(world: &World) -> Trace {
        Trace {
            ids: world.peer_ids(),
            epoch: World::epoch(),
            buf: Vec::new(),
            sink: None,
            error: None,
            events: 0,
            lines: 0,
            digest: FNV_OFFSET,
            timeline: Timeline::new(World::epoch(), world.duration()),
        }
    }

    /// A trace of `world` streamed to `sink` in chunks; call [`Trace::flush`] at the end.
    pub fn with_sink(world: &World, sink: Box<dyn Write + Send>) -> Trace {
        Trace {
            sink: Some(sink),
            buf: Vec::with_capacity(SINK_CHUNK_BYTES),
            ..Trace::new(world)
        }
    }

    /// Records a core event of node `node`.
    pub fn event(&mut self, now: Timestamp, node: usize, event: &Event) {
        self.events += 1;
        let ids = Arc::clone(&self.ids);
        let name = |p| Name(&ids, Some(p));
        let kind = event.kind();
        match event {
            Event::Connected { peer, .. } => self.timeline.conn_up(now, node, *peer),
            Event::Disconnected { peer } | Event::Dropping { peer, .. } => {
                self.timeline.conn_down(now, node, *peer)
            }
            _ => {}
        }
        match event {
            Event::Dialing { peer: Some(p), .. } => {
                self.line(now, Some(node), kind, format_args!("{}", name(p)))
            }
            Event::Dialing { peer: None, addr } => {
                self.line(now, Some(node), kind, format_args!("? {addr}"))
            }
            Event::DialFailed { peer, reason } => self.line(
                now,
                Some(node),
                kind,
                format_args!("{} {reason}", Name(&ids, peer.as_ref())),
            ),
            Event::Connected { peer, direction } => self.line(
                now,
                Some(node),
                kind,
                format_args!("{} {}", name(peer), direction.label()),
            ),
            Event::Disconnected { peer } | Event::Hello { peer } => {
                self.line(now, Some(node), kind, format_args!("{}", name(peer)))
            }
            Event::Dropping { peer, reason } => self.line(
                now,
                Some(node),
                kind,
                format_args!("{} {reason}", name(peer)),
            ),
            Event::Rtt { peer, rtt, .. } => self.line(
                now,
                Some(node),
                kind,
                format_args!("{} {}", name(peer), Millis(*rtt)),
            ),
            Event::PingTimeout { peer, failures, .. } => self.line(
                now,
                Some(node),
                kind,
                format_args!("{} failures={failures}", name(peer)),
            ),
            Event::PeersLearned {
                from,
                received,
                new,
                rejected,
                filtered: 0,
            } => self.line(
                now,
                Some(node),
                kind,
                format_args!("{} recv={received} new={new} rej={rejected}", name(from)),
            ),
            Event::PeersLearned {
                from,
                received,
                new,
                rejected,
                filtered,
            } => self.line(
                now,
                Some(node),
                kind,
                format_args!(
                    "{} recv={received} new={new} rej={rejected} filtered={filtered}",
                    name(from)
                ),
            ),
            Event::RttReport { from, rtts, .. } => self.line(
                now,
                Some(node),
                kind,
                format_args!("{} entries={}", name(from), rtts.len()),
            ),
            Event::Trimmed { cause, victims } => self.line(
                now,
                Some(node),
                kind,
                format_args!("{cause:?} victims={victims}"),
            ),
            Event::AdvertRejected { from, reason } => self.line(
                now,
                Some(node),
                kind,
                format_args!("{} {}", name(from), reason.label()),
            ),
            Event::Job(e) => self.job(now, node, e),
        }
    }

    /// A job event: deployment and allocation state changes and refusals get a line; log
    /// lines are only counted (as events).
    fn job(&mut self, now: Timestamp, node: usize, e: &JobEvent) {
        let ids = Arc::clone(&self.ids);
        let name = |p| Name(&ids, Some(p));
        match e {
            JobEvent::Deployment { id, state, reason } if *state == DeployState::Failed => self
                .line(
                    now,
                    Some(node),
                    e.kind(),
                    format_args!("#{id} {state} {}", failure_class(reason)),
                ),
            JobEvent::Deployment { id, state, .. } => {
                self.line(now, Some(node), e.kind(), format_args!("#{id} {state}"))
            }
            JobEvent::Allocation {
                id,
                requester,
                deployment,
                state,
                ..
            } => self.line(
                now,
                Some(node),
                e.kind(),
                format_args!(
                    "a{} {}#{deployment} {}",
                    id.0,
                    name(requester),
                    state.name()
                ),
            ),
            JobEvent::Refused {
                requester,
                deployment,
                reason,
                ..
            } => self.line(
                now,
                Some(node),
                e.kind(),
                format_args!("{}#{deployment} {reason}", name(requester)),
            ),
            JobEvent::Log { .. } => {}
        }
    }

    /// Engine line: node `node` started in `region` with last-mile RTT `last_mile`.
    pub fn node_started(
        &mut self,
        now: Timestamp,
        node: usize,
        region: &str,
        last_mile: Duration,
        bootstrap: bool,
    ) {
        self.node_started_in(now, node, region, last_mile, bootstrap, None);
    }

    /// Engine line: node `node` of class `class` (if the scenario has classes) started.
    pub fn node_started_in(
        &mut self,
        now: Timestamp,
        node: usize,
        region: &str,
        last_mile: Duration,
        bootstrap: bool,
        class: Option<&str>,
    ) {
        let boot = if bootstrap { " boot" } else { "" };
        let (sep, class) = class.map_or(("", ""), |c| (" class=", c));
        self.line(
            now,
            Some(node),
            "start",
            format_args!("{region} lm={}{boot}{sep}{class}", Millis(last_mile)),
        );
    }

    /// Engine line: the run ended with these message counts.
    pub fn run_ended(
        &mut self,
        now: Timestamp,
        sent: u64,
        delivered: u64,
        dropped: u64,
        in_flight: u64,
    ) {
        self.line(
            now,
            None,
            "end",
            format_args!(
                "sent={sent} delivered={delivered} dropped={dropped} in_flight={in_flight}"
            ),
        );
    }

    /// A free-form engine line about `node` (or the engine itself), for engine-specific
    /// happenings; document new kinds in the legend.
    pub fn note(
        &mut self,
        now: Timestamp,
        node: Option<usize>,
        kind: &str,
        detail: fmt::Arguments<'_>,
    ) {
        self.line(now, node, kind, detail);
    }

    fn line(
        &mut self,
        now: Timestamp,
        node: Option<usize>,
        kind: &str,
        detail: fmt::Arguments<'_>,
    ) {
        let start = self.buf.len();
        let us = now.as_micros().saturating_sub(self.epoch.as_micros());
        // The prefix is written by hand (it is on every line): `{:>5}.{:06} n{n} {kind} `.
        push_number(&mut self.buf, us / 1_000_000, 5, b' ');
        self.buf.push(b'.');
        push_number(&mut self.buf, us % 1_000_000, 6, b'0');
        match node {
            Some(n) => {
                self.buf.extend_from_slice(b" n");
                push_number(&mut self.buf, n as u64, 0, b'0');
            }
            None => self.buf.extend_from_slice(b" --"),
        }
        self.buf.push(b' ');
        self.buf.extend_from_slice(kind.as_bytes());
        self.buf.push(b' ');
        // Writing into a Vec cannot fail.
        let _ = self.buf.write_fmt(detail);
        self.buf.push(b'\n');
        self.lines += 1;
        for b in &self.buf[start..] {
            self.digest = (self.digest ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
        }
        if self.sink.is_some() && self.buf.len() >= SINK_CHUNK_BYTES {
            self.write_out();
        }
    }

    fn write_out(&mut self) {
        if let Some(sink) = &mut self.sink {
            if self.error.is_none()
                && let Err(e) = sink.write_all(&self.buf)
            {
                self.error = Some(e);
            }
            self.buf.clear();
        }
    }

    /// Writes what is buffered to the sink and flushes it; reports the first write error.
    /// Does nothing for an in-memory trace.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_out();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match &mut self.sink {
            Some(sink) => sink.flush(),
            None => Ok(()),
        }
    }

    /// Core events recorded.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Lines written (core events and engine lines).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// FNV-1a digest of every byte of the trace so far.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The trace text kept in memory: all of it for [`Trace::new`], the unwritten tail for
    /// a streaming trace.
    pub fn text(&self) -> &[u8] {
        &self.buf
    }

    /// The per-interval counts of the run: connections from the events recorded here,
    /// messages from the engine's hooks ([`Trace::timeline_mut`]).
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The per-interval counts, for the engines to count messages in.
    pub fn timeline_mut(&mut self) -> &mut Timeline {
        &mut self.timeline
    }

    /// The in-memory text, consuming the trace.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests;
