//! The region data set: region list, population weights and the region-to-region RTT matrix.
//!
//! The CSV files in `sim/data/` are embedded in the binary with `include_str!` and parsed
//! once, at first use, by [`RegionData::embedded`]. `sim/data/SOURCES.md` says where every
//! number comes from and which cells are modelled rather than measured.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

const REGIONS_CSV: &str = include_str!("../data/regions.csv");
const RTT_CSV: &str = include_str!("../data/rtt_ms.csv");
const RTT_SOURCE_CSV: &str = include_str!("../data/rtt_source.csv");

/// Why the region data could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// A line of a CSV file is malformed; the message says what was expected.
    #[error("{file}:{line}: {message}; fix the data file")]
    Csv {
        /// The file name.
        file: &'static str,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// One region: a data-centre city that stands for the peers around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// Short name, e.g. `eu-west`.
    pub name: String,
    /// Continent, e.g. `Europe`.
    pub continent: String,
    /// Latitude of the city, degrees.
    pub lat_deg: f64,
    /// Longitude of the city, degrees.
    pub lon_deg: f64,
    /// Share of the world's internet users nearest to this region (all sum to 1).
    pub population_weight: f64,
}

/// Where one RTT cell comes from (see `sim/data/SOURCES.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellSource {
    /// Measured between AWS regions (cloudping.co, p50 over a year).
    Aws,
    /// RIPE Atlas country-pair average; few samples, low confidence.
    Ripe,
    /// Modelled: routed through London.
    Hub,
    /// Assumed, not measured.
    Default,
}

/// The parsed data set.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionData {
    regions: Vec<Region>,
    /// Row-major `n x n` median RTTs, microseconds.
    rtt_us: Vec<u32>,
    sources: Vec<CellSource>,
}

impl RegionData {
    /// The data set embedded in the binary, parsed on first use.
    pub fn embedded() -> Result<Arc<RegionData>, DataError> {
        static DATA: OnceLock<Result<Arc<RegionData>, DataError>> = OnceLock::new();
        DATA.get_or_init(|| RegionData::parse(REGIONS_CSV, RTT_CSV, RTT_SOURCE_CSV).map(Arc::new))
            .clone()
    }

    /// Parses the three CSV files: regions, RTT matrix in ms, source code per cell.
    pub fn parse(regions_csv: &str, rtt_csv: &str, source_csv: &str) -> Result<Self, DataError> {
        let regions = parse_regions(regions_csv)?;
        let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
        let rtt_ms = parse_matrix("rtt_ms.csv", rtt_csv, &names, |cell| {
            cell.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0 && *v < 10_000.0)
        })?;
        let sources = parse_matrix("rtt_source.csv", source_csv, &names, |cell| match cell {
            "A" => Some(CellSource::Aws),
            "R" => Some(CellSource::Ripe),
            "H" => Some(CellSource::Hub),
            "D" => Some(CellSource::Default),
            _ => None,
        })?;
        let n = names.len();
        for a in 0..n {
            for b in 0..a {
                if rtt_ms[a * n + b] != rtt_ms[b * n + a] {
                    return Err(DataError::Csv {
                        file: "rtt_ms.csv",
                        line: a + 2,
                        message: format!(
                            "RTT {}-{} differs from {}-{}",
                            names[a], names[b], names[b], names[a]
                        ),
                    });
                }
            }
        }
        let rtt_us = rtt_ms
            .iter()
            .map(|ms| (ms * 1000.0).round() as u32)
            .collect();
        Ok(RegionData {
            regions,
            rtt_us,
            sources,
        })
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// True if there is no region (never for the embedded data).
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// All regions in file order.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The region at `index`.
    pub fn region(&self, index: usize) -> &Region {
        &self.regions[index]
    }

    /// The index of the region called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }

    /// Median RTT between two regions, microseconds.
    pub fn rtt_us(&self, a: usize, b: usize) -> u32 {
        self.rtt_us[a * self.regions.len() + b]
    }

    /// Median RTT between two regions.
    pub fn rtt(&self, a: usize, b: usize) -> Duration {
        Duration::from_micros(u64::from(self.rtt_us(a, b)))
    }

    /// Where the RTT between two regions comes from.
    pub fn source(&self, a: usize, b: usize) -> CellSource {
        self.sources[a * self.regions.len() + b]
    }
}

fn csv_error(file: &'static str, line: usize, message: impl Into<String>) -> DataError {
    DataError::Csv {
        file,
        line,
        message: message.into(),
    }
}

fn parse_regions(text: &str) -> Result<Vec<Region>, DataError> {
    const FILE: &str = "regions.csv";
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, "region,continent,lat,lon,population_weight")) => {}
        _ => {
            return Err(csv_error(
                FILE,
                1,
                "expected header `region,continent,lat,lon,population_weight`",
            ));
        }
    }
    let mut regions = Vec::new();
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let [name, continent, lat, lon, weight] = cells[..] else {
            return Err(csv_error(
                FILE,
                i + 1,
                format!("expected 5 cells, found {}", cells.len()),
            ));
        };
        let number = |cell: &str, what: &str| {
            cell.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| csv_error(FILE, i + 1, format!("{what} `{cell}` is not a number")))
        };
        regions.push(Region {
            name: name.to_string(),
            continent: continent.to_string(),
            lat_deg: number(lat, "latitude")?,
            lon_deg: number(lon, "longitude")?,
            population_weight: number(weight, "population weight")?,
        });
    }
    if regions.is_empty() {
        return Err(csv_error(FILE, 2, "no region"));
    }
    let total: f64 = regions.iter().map(|r| r.population_weight).sum();
    if (total - 1.0).abs() > 0.01 || regions.iter().any(|r| r.population_weight < 0.0) {
        return Err(csv_error(
            FILE,
            2,
            format!("population weights sum to {total}, expected 1"),
        ));
    }
    Ok(regions)
}

/// Parses a square matrix whose header row and first column are `names` in order.
fn parse_matrix<T>(
    file: &'static str,
    text: &str,
    names: &[&str],
    cell: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, DataError> {
    let n = names.len();
    let rows: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    if rows.len() != n + 1 {
        return Err(csv_error(
            file,
            1,
            format!("expected {} lines, found {}", n + 1, rows.len()),
        ));
    }
    let header: Vec<&str> = rows[0].1.split(',').map(str::trim).collect();
    if header.first() != Some(&"region") || header[1..] != *names {
        return Err(csv_error(
            file,
            1,
            "header must be `region` then the regions of regions.csv in order",
        ));
    }
    let mut out = Vec::with_capacity(n * n);
    for (row, &(i, line)) in rows[1..].iter().enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != n + 1 || cells[0] != names[row] {
            return Err(csv_error(
                file,
                i + 1,
                format!("expected row `{}` with {} values", names[row], n),
            ));
        }
        for (col, text) in cells[1..].iter().enumerate() {
            let value = cell(text).ok_or_else(|| {
                csv_error(
                    file,
                    i + 1,
                    format!("bad value `{text}` for {}-{}", names[row], names[col]),
                )
            })?;
            out.push(value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_data_parses_and_is_consistent() {
        let data = RegionData::embedded().unwrap();
        assert_eq!(data.len(), 19);
        let eu_west = data.index_of("eu-west").unwrap();
        let eu_central = data.index_of("eu-central").unwrap();
        let af_west = data.index_of("af-west").unwrap();
        assert_eq!(data.rtt_us(eu_west, eu_central), 17_800);
        assert_eq!(data.rtt(eu_central, eu_west), Duration::from_micros(17_800));
        assert_eq!(data.source(eu_west, af_west), CellSource::Ripe);
        assert_eq!(data.source(af_west, af_west), CellSource::Default);
        assert_eq!(data.source(eu_west, eu_central), CellSource::Aws);
        let total: f64 = data.regions().iter().map(|r| r.population_weight).sum();
        assert!((total - 1.0).abs() < 1e-3);
        assert!(
            Arc::ptr_eq(&data, &RegionData::embedded().unwrap()),
            "parsed once"
        );
    }

    #[test]
    fn broken_files_are_reported_with_file_and_line() {
        let regions = "region,continent,lat,lon,population_weight\na,X,0,0,0.5\nb,X,0,0,0.5\n";
        let rtt = "region,a,b\na,1,2\nb,2,1\n";
        let src = "region,a,b\na,A,A\nb,A,A\n";
        assert!(RegionData::parse(regions, rtt, src).is_ok());
        let err = RegionData::parse(regions, "region,a,b\na,1,2\nb,3,1\n", src).unwrap_err();
        assert!(
            err.to_string().starts_with("rtt_ms.csv:3: RTT b-a differs"),
            "{err}"
        );
        let err = RegionData::parse(regions, "region,a,b\na,1,x\nb,2,1\n", src).unwrap_err();
        assert_eq!(err, csv_error("rtt_ms.csv", 2, "bad value `x` for a-b"));
        let err = RegionData::parse(regions, rtt, "region,a,b\na,A,Q\nb,A,A\n").unwrap_err();
        assert!(err.to_string().starts_with("rtt_source.csv:2:"), "{err}");
        let err = RegionData::parse(
            "region,continent,lat,lon,population_weight\na,X,0,0\n",
            rtt,
            src,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("regions.csv:2: expected 5 cells"),
            "{err}"
        );
    }
}
