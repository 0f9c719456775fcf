//! The kernel's CPU list format (`0-3,8,10-11`), as found in
//! `/sys/devices/system/cpu/online`, `.../isolated`, `thread_siblings_list`
//! and `/proc/irq/N/smp_affinity_list`.

use std::fmt;

/// A CPU list that does not follow the kernel's `a-b,c` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuListError {
    pub text: String,
}

impl fmt::Display for CpuListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a CPU list: {:?}", self.text)
    }
}

impl std::error::Error for CpuListError {}

/// The largest CPU number accepted, so a corrupt range cannot allocate
/// without bound (the kernel's NR_CPUS maximum is 8192).
pub const CPU_NUMBER_MAX: usize = 8191;

/// Parses `0-3,8,10-11` into a sorted list without duplicates. An empty
/// (or all-whitespace) text is the empty list, as the kernel writes it for
/// `isolated` when nothing is isolated.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, CpuListError> {
    let error = || CpuListError { text: text.to_string() };
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.trim().is_empty()) {
        let part = part.trim();
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let first: usize = first.parse().map_err(|_| error())?;
        let last: usize = last.parse().map_err(|_| error())?;
        if first > last || last > CPU_NUMBER_MAX {
            return Err(error());
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Formats CPUs back into the kernel's list format, collapsing runs:
/// `[0, 1, 2, 5]` is `0-2,5`. The empty list is the empty string.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut index = 0;
    while index < sorted.len() {
        let first = sorted[index];
        let mut last = first;
        while index + 1 < sorted.len() && sorted[index + 1] == last + 1 {
            index += 1;
            last = sorted[index];
        }
        if first == last {
            parts.push(first.to_string());
        } else {
            parts.push(format!("{first}-{last}"));
        }
        index += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_singles_and_empty() {
        assert_eq!(parse_cpu_list("0-1\n").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpu_list("0-3,8,10-11").unwrap(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("5,1,1").unwrap(), vec![1, 5]);
        assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<usize>::new());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("0-99999999").is_err());
    }

    #[test]
    fn formats_runs() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(format_cpu_list(&[3]), "3");
        assert_eq!(format_cpu_list(&[]), "");
        let text = "0-3,8,10-11";
        assert_eq!(format_cpu_list(&parse_cpu_list(text).unwrap()), text);
    }
}
