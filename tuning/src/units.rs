//! Human-readable sizes and rates for check findings and iotune output.
//!
//! Sizes print exactly (`8 MiB`, `3076 KiB`, `1000 bytes`) so a finding can
//! be compared with the number it came from; rates print in decimal units
//! (`1.23 GB/s`) as disk and network vendors quote them.

/// Bytes in a KiB, MiB and GiB.
pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// Formats `bytes` in the largest binary unit that divides it exactly, so
/// the text is never rounded: `8388608` is `8 MiB`, `3149824` is
/// `3076 KiB`, `1000` is `1000 bytes`.
pub fn format_bytes_exact(bytes: u64) -> String {
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes >= unit && bytes / unit * unit == bytes {
            return format!("{} {name}", bytes / unit);
        }
    }
    if bytes == 1 {
        "1 byte".to_string()
    } else {
        format!("{bytes} bytes")
    }
}

/// Formats a resource limit: `u64::MAX` (RLIM_INFINITY) is `unlimited`.
pub fn format_limit(bytes: u64) -> String {
    if bytes == u64::MAX {
        "unlimited".to_string()
    } else {
        format_bytes_exact(bytes)
    }
}

/// Formats a rate in decimal units with three significant digits:
/// `1.23 GB/s`, `456 MB/s`, `12.0 kB/s`.
pub fn format_rate(bytes_per_sec: f64) -> String {
    let (value, unit) = if bytes_per_sec >= 1e9 {
        (bytes_per_sec / 1e9, "GB/s")
    } else if bytes_per_sec >= 1e6 {
        (bytes_per_sec / 1e6, "MB/s")
    } else if bytes_per_sec >= 1e3 {
        (bytes_per_sec / 1e3, "kB/s")
    } else {
        (bytes_per_sec, "B/s")
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// Formats a block size for progress lines: `4 KiB`, `1 MiB`.
pub fn format_block(bytes: usize) -> String {
    format_bytes_exact(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sizes_never_round() {
        assert_eq!(format_bytes_exact(8 * MIB), "8 MiB");
        assert_eq!(format_bytes_exact(3 * MIB + 4 * KIB), "3076 KiB");
        assert_eq!(format_bytes_exact(64 * KIB), "64 KiB");
        assert_eq!(format_bytes_exact(1000), "1000 bytes");
        assert_eq!(format_bytes_exact(0), "0 bytes");
        assert_eq!(format_bytes_exact(2 * GIB), "2 GiB");
        assert_eq!(format_limit(u64::MAX), "unlimited");
    }

    #[test]
    fn rates_use_decimal_units() {
        assert_eq!(format_rate(1.234e9), "1.23 GB/s");
        assert_eq!(format_rate(456.4e6), "456 MB/s");
        assert_eq!(format_rate(12_000.0), "12.0 kB/s");
        assert_eq!(format_rate(5.0), "5.00 B/s");
    }
}
