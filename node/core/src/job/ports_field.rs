//! The `ports` key of a job spec: a number of host ports, or container ports to map.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Invalid, PORTS_MAX};

/// Host ports a worker needs: `ports = 2` asks for two host ports; `ports = [80, 443]`
/// maps each container port to a host port of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ports {
    /// This many host ports (0: none).
    Host(u64),
    /// These container ports, each mapped to its own host port.
    Map(Vec<u16>),
}

impl Default for Ports {
    fn default() -> Self {
        Ports::Host(0)
    }
}

impl Ports {
    /// Whether no port is asked for.
    pub fn is_none(&self) -> bool {
        self.host_ports() == 0
    }

    /// How many host ports a worker needs.
    pub fn host_ports(&self) -> usize {
        match self {
            Ports::Host(n) => usize::try_from(*n).unwrap_or(usize::MAX),
            Ports::Map(list) => list.len(),
        }
    }

    pub(super) fn validate(&self, out: &mut Vec<Invalid>) {
        if self.host_ports() > PORTS_MAX {
            out.push(Invalid::new(
                &["ports"],
                format!(
                    "{} ports asked; ask for at most {PORTS_MAX}",
                    self.host_ports()
                ),
            ));
        }
        if let Ports::Map(list) = self {
            let mut seen = BTreeSet::new();
            for p in list {
                if *p == 0 {
                    out.push(Invalid::new(
                        &["ports"],
                        "container port 0 is not a port; write ports in 1..=65535, e.g. ports = [80]",
                    ));
                } else if !seen.insert(*p) {
                    out.push(Invalid::new(
                        &["ports"],
                        format!("container port {p} is listed twice; list each port once"),
                    ));
                }
            }
        }
    }
}

impl Serialize for Ports {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ports::Host(n) => s.serialize_u64(*n),
            Ports::Map(list) => list.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PortsVisitor)
    }
}

struct PortsVisitor;

impl<'de> Visitor<'de> for PortsVisitor {
    type Value = Ports;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a number of host ports (ports = 2) or a list of container ports (ports = [80, 443])",
        )
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Ports, E> {
        Ok(Ports::Host(n))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Ports, E> {
        u64::try_from(n)
            .map(Ports::Host)
            .map_err(|_| E::custom(format!("ports = {n} is negative; write e.g. ports = 2")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ports, A::Error> {
        let mut list = Vec::new();
        while let Some(p) = seq.next_element::<u16>()? {
            list.push(p);
            if list.len() > PORTS_MAX {
                return Err(de::Error::custom(format!(
                    "more than {PORTS_MAX} container ports; list at most {PORTS_MAX}"
                )));
            }
        }
        Ok(Ports::Map(list))
    }
}
